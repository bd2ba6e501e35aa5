"""Modality x objective: every two-view, masked-modelling and other recipe of the non-image modalities.

One table (issue 13) of the recipes in :data:`ROWS`, each run as written (its own data, encoder, steps,
batch, optimiser and evaluation) and scored against the same architecture at random initialisation
(``eval.baselines: [random_init]`` in every recipe):

- audio, ``recipes/audio/fsdd/{simclr,byol,mae}.yaml``: pretrained on three FSDD speakers without labels;
  1/5/10-shot linear probes (mean ± std over 5 draws), kNN and a linear probe on spoken-digit labels, all
  scored on the fourth speaker; the other baseline is the recipe's own sound-texture statistics (fixed
  features through the same probes, ``eval.baselines: texture_stats``);
- point clouds, ``recipes/pointcloud/{simclr,byol,point_mae,acd_10shot}.yaml``: built-in part-annotated
  shapes; 10-shot part segmentation, fine-tuned and frozen-linear, class mIoU (mean ± std over 3 draws);
- video, ``recipes/video/{simclr,byol,videomae,crw}.yaml``: built-in procedural videos; DAVIS-style label
  propagation J&F on the held-out sequences (other baseline: raw Lab colour cells, the evaluator's
  ``jf_mean_raw_color``) and kNN on the motion classes (not for CRW, whose recipe has no kNN);
- image-text, ``recipes/crossmodal/image_text.yaml`` (CLIP): zero-shot shape / fill / colour top-1 and
  retrieval R@1 both ways on the held-out pairs (other baseline: chance), kNN shape with the image tower.

Real data, evaluation only (:data:`REAL_EVALS`, issue 13's "evidence on real data"): after the rows above,
the encoder each point-cloud and video row trained on built-in data (``<out>/<tag>/encoder.pt``) is
evaluated again, with the real-data overrides its recipe header gives, by ``python -m mmssl.cli eval
<recipe> ckpt=<out>/<tag>/encoder.pt out_dir=<out>/<tag>_real [the row's overrides] <real overrides>``,
against the same architecture at random init (``mmssl eval`` evaluates both); each such row sits right
under the row whose encoder it evaluated, with that row's steps and train time:

- point clouds: 10-shot part segmentation on real ShapeNetPart shapes (``data.eval_on``:
  ``../shared/data/3d/shapenetpart_points``, 224 points, 8 categories; support = its 10-shot train lists,
  scored = its test lists), fine-tuned and frozen-linear class mIoU, the recipes' 3 seeds;
- video: label-propagation J&F on the real DAVIS sequences in ``../shared/data/video/DAVIS`` (the 6 there),
  first 30 frames at a 120-px short side, radius 6 cells (3 for VideoMAE's stride-8 grid); other baseline:
  raw Lab colour (``jf_mean_raw_color``).

No setting of these evaluations was chosen by looking at their figures; they are the recipe headers'.

Every evaluator reports fractions in [0, 1] (accuracy, mIoU, J&F, recall); the table shows all of them
as percentages with one decimal. "train time" is the run's pretraining time (``train_seconds``).

Each row is a fresh subprocess, ``python -m mmssl.cli run <recipe> out_dir=<out>/<tag> [overrides]``, from
the repository root (the recipes' ``../shared/data`` paths are relative to it); its output goes to
``<out>/<tag>.log`` and its metrics to ``<out>/<tag>/metrics.json``. A crash is a FAILED row naming the log
and the other rows go on; a recipe whose data folder is absent (any ``root`` of its data or eval section,
e.g. ``../shared/data/...``) is a "skipped" row naming it, and so is a real-data row whose pretraining row
has no encoder. ``--reuse`` keeps a row whose metrics.json exists and whose ``<out>/<tag>.overrides.json``
equals this invocation's overrides (a real-data row: only if its metrics.json is newer than the encoder it
evaluated), so an interrupted benchmark continues where it stopped; ``--no-run`` only tabulates finished
rows; ``--no-real`` leaves the real-data rows out.

Budget: the recipe headers state (measured or estimated) 3.5-8.6 min per row on 2 CPU cores, about
80 min for all 12 (:attr:`Row.minutes`); ``--steps-fraction F`` scales the pretraining only. The 8
real-data evaluations (:attr:`RealEval.minutes`, measured) take 1.8-2.8 min each, about 19 min in all
(the recipe headers' "~4.5 min" for a DAVIS evaluation was an overestimate: 2.4 min for CRW).

``--quick`` is a smoke test of this script, not a measurement: 2 pretraining steps and the cheapest
evaluation settings (one draw, few probe epochs, two propagation sequences; on real data one
part-segmentation seed and 2 DAVIS sequences of 4 frames), seconds to a minute a row, ~4 min for all.

    .venv/bin/python benchmarks/modalities.py                              # all rows, the recipes' budgets
    .venv/bin/python benchmarks/modalities.py --rows audio --reuse        # audio rows, keep finished ones
    .venv/bin/python benchmarks/modalities.py --rows video --reuse        # + DAVIS rows of the video encoders
    .venv/bin/python benchmarks/modalities.py --steps-fraction 0.5 --set train.seed=1
    .venv/bin/python benchmarks/modalities.py --no-run --markdown-out runs/bench_modalities/table.md
    .venv/bin/python benchmarks/modalities.py --quick --out /tmp/modq     # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("runs") / "bench_modalities"


@dataclass(frozen=True)
class Metric:
    """One figure of a run: ``key`` is a dotted path into metrics.json's ``eval`` dict (its std, when the
    evaluator reports one, is found next to it); ``reference``: another ``eval`` key shown under "other
    baselines" as ``reference_label`` (a no-learning reference the evaluator computes itself)."""

    key: str
    label: str
    reference: str | None = None
    reference_label: str = ""


@dataclass(frozen=True)
class Row:
    """One recipe of the table; ``quick``: the overrides of ``--quick`` (besides ``train.steps=2``);
    ``minutes``: the full run's wall time on 2 CPU cores as its recipe header states it."""

    modality: str
    objective: str
    recipe: str
    metrics: tuple[Metric, ...]
    quick: tuple[str, ...] = field(default=())
    minutes: float = 0.0


@dataclass(frozen=True)
class RealEval:
    """An evaluation-only row on real data: the encoder that the row of ``recipe`` trained
    (``<out>/<row tag>/encoder.pt``), evaluated by ``mmssl eval <recipe> ckpt=<that file>
    out_dir=<out>/<row tag>_real`` with ``overrides`` (the real data and its settings, as the recipe
    header writes them) next to the same architecture at random init. ``quick``: added under ``--quick``
    (besides the row's own quick overrides); ``minutes``: the evaluation's wall time on 2 CPU cores."""

    recipe: str
    overrides: tuple[str, ...]
    metrics: tuple[Metric, ...]
    quick: tuple[str, ...] = field(default=())
    minutes: float = 0.0


AUDIO = (
    Metric("fewshot_1_mean", "1-shot top-1"),
    Metric("fewshot_5_mean", "5-shot top-1"),
    Metric("fewshot_10_mean", "10-shot top-1"),
    Metric("knn_top1", "kNN top-1"),
    Metric("linear_top1", "linear top-1"),
)
POINTCLOUD = (
    Metric("fewshot10_ft_class_miou", "10-shot fine-tuned class mIoU"),
    Metric("fewshot10_linear_class_miou", "10-shot linear class mIoU"),
)
JF = Metric("jf_mean", "label-prop. J&F", "jf_mean_raw_color", "raw colour")
VIDEO = (JF, Metric("knn_top1", "kNN top-1 (motion)"))
IMAGE_TEXT = (
    Metric("zeroshot_shape_top1", "zero-shot shape top-1", "zeroshot_shape_chance", "chance"),
    Metric("zeroshot_fill_top1", "zero-shot fill top-1", "zeroshot_fill_chance", "chance"),
    Metric("zeroshot_colour_top1", "zero-shot colour top-1", "zeroshot_colour_chance", "chance"),
    Metric("ret_image2text_r1", "R@1 image->text", "ret_chance_r1", "chance"),
    Metric("ret_text2image_r1", "R@1 text->image", "ret_chance_r1", "chance"),
    Metric("knn_top1", "kNN shape top-1 (image tower)"),
)

QUICK_AUDIO = (
    "train.batch_size=16",
    "eval.few_shot.seeds=1",
    "eval.few_shot.epochs=10",
    "eval.linear.epochs=10",
)
QUICK_POINTCLOUD = (
    "train.batch_size=4",
    "eval.part_segmentation.seeds=1",
    "eval.part_segmentation.steps=2",
    "eval.part_segmentation.linear_epochs=1",
    "eval.part_segmentation.num_renders=0",
)
QUICK_VIDEO = ("train.batch_size=4", "data.num_propagation_sequences=2", "eval.label_propagation.n_context=2")
QUICK_IMAGE_TEXT = ("train.batch_size=16",)

ROWS: tuple[Row, ...] = (
    Row("audio", "SimCLR (two-view)", "audio/fsdd/simclr", AUDIO, QUICK_AUDIO, 4.6),
    Row("audio", "BYOL (two-view)", "audio/fsdd/byol", AUDIO, QUICK_AUDIO, 6.0),
    Row("audio", "masked (Audio-MAE)", "audio/fsdd/mae", AUDIO, QUICK_AUDIO, 6.3),
    Row("pointcloud", "SimCLR (two-view)", "pointcloud/simclr", POINTCLOUD, QUICK_POINTCLOUD, 8.5),
    Row("pointcloud", "BYOL (two-view)", "pointcloud/byol", POINTCLOUD, QUICK_POINTCLOUD, 8.6),
    Row("pointcloud", "masked (Point-MAE)", "pointcloud/point_mae", POINTCLOUD, QUICK_POINTCLOUD, 7.5),
    Row("pointcloud", "ACD", "pointcloud/acd_10shot", POINTCLOUD, QUICK_POINTCLOUD, 8.4),
    Row("video", "SimCLR (two-view)", "video/simclr", VIDEO, QUICK_VIDEO, 6.5),
    Row("video", "BYOL (two-view)", "video/byol", VIDEO, QUICK_VIDEO, 7.5),
    Row("video", "masked (VideoMAE)", "video/videomae", VIDEO, QUICK_VIDEO, 6.8),
    Row("video", "CRW", "video/crw", (JF,), QUICK_VIDEO, 3.5),
    Row("image-text", "CLIP", "crossmodal/image_text", IMAGE_TEXT, QUICK_IMAGE_TEXT, 6.2),
)

# Real data, evaluation only (``mmssl eval``) of the encoders the rows above trained; the overrides are
# those of the recipe headers ("Real shapes" / "Real DAVIS sample"). Paths are relative to ROOT.
SHAPENETPART = "../shared/data/3d/shapenetpart_points"
SHAPENETPART_EVAL = (
    f"data.eval_on={{root: {SHAPENETPART}, num_points: 224, "
    "categories: [Airplane, Car, Chair, Guitar, Lamp, Laptop, Mug, Table]}",
)
POINTCLOUD_REAL = (
    Metric("fewshot10_ft_class_miou", "10-shot fine-tuned class mIoU, real ShapeNetPart (test split)"),
    Metric("fewshot10_linear_class_miou", "10-shot linear class mIoU, real ShapeNetPart (test split)"),
)
DAVIS = "../shared/data/video/DAVIS"
DAVIS_FRAMES = 30


def davis_eval(radius: int) -> tuple[str, ...]:
    """Label propagation on the DAVIS sample: 120-px short side, the first DAVIS_FRAMES frames, ``radius``
    cells (the paper's 12 cells at 60x107 scaled to the encoder's grid: 6 at stride 4, 3 at stride 8)."""
    lp = "eval.label_propagation"
    return (
        f"{lp}.root={DAVIS}",
        f"{lp}.frame_size=120",
        f"{lp}.max_frames={DAVIS_FRAMES}",
        f"{lp}.radius={radius}",
    )


JF_DAVIS = Metric(
    "jf_mean",
    f"label-prop. J&F, real DAVIS (6 seq., first {DAVIS_FRAMES} frames, 120 px)",
    "jf_mean_raw_color",
    "raw colour",
)
QUICK_DAVIS = ("eval.label_propagation.max_frames=4", "eval.label_propagation.sequences=2")

# minutes: the wall time of each `mmssl eval` (both encoders) measured on the 2 shared CPU cores, niced,
# load average ~3 (docs/results/modalities.md).
REAL_EVALS: tuple[RealEval, ...] = (
    RealEval("pointcloud/simclr", SHAPENETPART_EVAL, POINTCLOUD_REAL, minutes=2.0),
    RealEval("pointcloud/byol", SHAPENETPART_EVAL, POINTCLOUD_REAL, minutes=2.1),
    RealEval("pointcloud/point_mae", SHAPENETPART_EVAL, POINTCLOUD_REAL, minutes=2.6),
    RealEval("pointcloud/acd_10shot", SHAPENETPART_EVAL, POINTCLOUD_REAL, minutes=2.2),
    RealEval("video/simclr", davis_eval(6), (JF_DAVIS,), QUICK_DAVIS, 2.6),
    RealEval("video/byol", davis_eval(6), (JF_DAVIS,), QUICK_DAVIS, 2.8),
    RealEval("video/videomae", davis_eval(3), (JF_DAVIS,), QUICK_DAVIS, 1.8),
    RealEval("video/crw", davis_eval(6), (JF_DAVIS,), QUICK_DAVIS, 2.4),
)

QUICK_STEPS = 2
RANDOM_INIT = "random_init"
REAL_SUFFIX = "_real"


# --------------------------------------------------------------------------- running


def tag_of(row: Row) -> str:
    return row.recipe.replace("/", "_")


def row_of(recipe: str) -> Row:
    """The pretraining row of ``recipe`` (a :class:`RealEval` evaluates its encoder)."""
    return next(r for r in ROWS if r.recipe == recipe)


def load_config(row: Row, overrides: list[str]) -> Any:
    """The row's validated recipe (``mmssl.config.RecipeConfig``) with ``overrides``, resolved from ROOT."""
    from mmssl.cli import resolve_recipe
    from mmssl.config import load_recipe

    cwd = Path.cwd()
    os.chdir(ROOT)  # recipe names and the recipes' relative data paths resolve from the repository root
    try:
        return load_recipe(resolve_recipe(row.recipe), overrides)
    finally:
        os.chdir(cwd)


def missing_data(section: Any) -> str | None:
    """The first ``root`` path named in a config section (nested) that does not exist (relative to ROOT)."""
    if isinstance(section, dict):
        for key, value in section.items():
            if key == "root" and isinstance(value, str) and not (ROOT / Path(value).expanduser()).exists():
                return value
            found = missing_data(value)
            if found:
                return found
    return None


def row_overrides(row: Row, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> list[str]:
    """``--quick`` settings or ``--steps-fraction`` steps, then ``extra``, then every ``--set`` (the last
    one wins). A real-data evaluation passes its row's overrides too, so that it rebuilds the encoder (and
    seeds, and evaluation settings) that the row trained with."""
    sets: list[str] = []
    if args.quick:
        sets += [f"train.steps={QUICK_STEPS}", "train.progress=false", *row.quick]
    elif args.steps_fraction is not None:
        steps = int(load_config(row, []).train.steps)
        sets.append(f"train.steps={max(1, round(args.steps_fraction * steps))}")
    return sets + list(extra) + list(args.set)


def real_overrides(spec: RealEval, args: argparse.Namespace) -> list[str]:
    return row_overrides(row_of(spec.recipe), args, spec.overrides + (spec.quick if args.quick else ()))


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_row(row: Row, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run (or reuse, or only collect) one pretraining row; a record with ``status`` ok / failed /
    skipped / absent."""
    record: dict[str, Any] = {"row": row, "tag": tag_of(row), "shown": row.metrics}
    return execute(record, "run", lambda: row_overrides(row, args), args, out)


def run_real(spec: RealEval, source: dict[str, Any], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Evaluate the encoder of the pretraining row ``source`` (its record) on real data: only
    ``mmssl eval``, trained and random init. Skipped when that row has no encoder; reused (``--reuse``)
    only if its metrics are newer than the encoder."""
    row = source["row"]
    record: dict[str, Any] = {"row": row, "tag": source["tag"] + REAL_SUFFIX, "shown": spec.metrics}
    record["source"] = source
    encoder = out / source["tag"] / "encoder.pt"
    if not args.no_run:
        if source["status"] != "ok":
            reason = f"no encoder: row {source['tag']} {source['status']}"
            say(f"{record['tag']}: skipped, {reason}")
            return {**record, "status": "skipped", "error": reason}
        if not encoder.is_file():
            say(f"{record['tag']}: skipped, encoder not found: {encoder}")
            return {**record, "status": "skipped", "error": f"encoder not found: {encoder}"}
    return execute(record, "eval", lambda: real_overrides(spec, args), args, out, ckpt=encoder)


def execute(
    record: dict[str, Any],
    command: str,
    overrides_of: Any,
    args: argparse.Namespace,
    out: Path,
    ckpt: Path | None = None,
) -> dict[str, Any]:
    """``python -m mmssl.cli <command> <recipe> [ckpt=<ckpt>] out_dir=<out>/<tag> <overrides>`` from ROOT,
    its output in ``<out>/<tag>.log``, or the finished metrics (``--no-run``, ``--reuse``)."""
    row: Row = record["row"]
    tag = record["tag"]
    run_dir, log, saved = out / tag, out / f"{tag}.log", out / f"{tag}.overrides.json"
    record["log"] = log
    metrics_path = run_dir / "metrics.json"
    if args.no_run:
        if metrics_path.is_file():
            return {**record, "status": "ok", "metrics": json.loads(metrics_path.read_text())}
        return {**record, "status": "absent"}
    try:
        overrides = overrides_of()
        cfg = load_config(row, overrides)
    except Exception as err:  # a bad recipe or override: a FAILED row, not a traceback
        return {**record, "status": "failed", "error": f"config: {type(err).__name__}: {err}"}
    cfg_dict = cfg.to_dict()
    absent = missing_data(cfg_dict.get("data")) or missing_data(cfg_dict.get("eval"))
    if absent:
        say(f"{tag}: skipped, data not found: {absent}")
        return {**record, "status": "skipped", "error": f"data not found: {absent}"}
    fresh = ckpt is None or (metrics_path.is_file() and metrics_path.stat().st_mtime >= ckpt.stat().st_mtime)
    if args.reuse and metrics_path.is_file() and saved.is_file() and fresh:
        if json.loads(saved.read_text()) == overrides:
            say(f"{tag}: reusing {metrics_path}")
            return {**record, "status": "ok", "metrics": json.loads(metrics_path.read_text())}
    out.mkdir(parents=True, exist_ok=True)
    saved.unlink(missing_ok=True)
    metrics_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "mmssl.cli", command, row.recipe]
    cmd += [f"ckpt={ckpt}"] if ckpt is not None else []
    cmd += [f"out_dir={run_dir}", *overrides]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    say(f"{tag}: running (log {log})")
    t0 = time.perf_counter()
    with log.open("w") as handle:
        handle.write(f"$ {shlex.join(cmd)}\n")
        handle.flush()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if proc.returncode == 0 and metrics_path.is_file():
        saved.write_text(json.dumps(overrides, indent=2))
        record.update(status="ok", metrics=json.loads(metrics_path.read_text()))
    else:
        error = last_line(log)
        data_error = error.startswith("mmssl: data error:")
        not_found = any(s in error for s in ("not found", "No such file", "FileNotFoundError"))
        status = "skipped" if data_error and not_found else "failed"
        record.update(status=status, error=f"exit code {proc.returncode}: {error}")
    shown = "ok" if record["status"] == "ok" else f"{record['status'].upper()} ({record['error']})"
    say(f"{tag}: {shown} in {record['wall_seconds']} s")
    return record


# --------------------------------------------------------------------------- table


def lookup(section: dict[str, Any] | None, path: str) -> Any:
    """``section[path]``, or a dotted path into nested dicts; None where absent."""
    if not section:
        return None
    if path in section:
        return section[path]
    node: Any = section
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def std_of(section: dict[str, Any] | None, key: str) -> Any:
    base = key[: -len("_mean")] if key.endswith("_mean") else key
    return lookup(section, f"{base}_std")


def pct(value: Any, std: Any = None) -> str:
    """A fraction as a percentage with one decimal (± std where given); "-" when absent."""
    if not isinstance(value, (int, float)):
        return "-"
    text = f"{100 * value:.1f}"
    return f"{text} ± {100 * std:.1f}" if isinstance(std, (int, float)) else text


def others(metrics: dict[str, Any], metric: Metric) -> str:
    """Baselines other than random init (retrained ones, e.g. texture statistics) and the reference."""
    parts = [
        f"{name.replace('_', ' ')} {pct(lookup(ev, metric.key), std_of(ev, metric.key))}"
        for name, ev in (metrics.get("baselines") or {}).items()
        if name != RANDOM_INIT
    ]
    if metric.reference is not None:
        parts.append(f"{metric.reference_label} {pct(lookup(metrics.get('eval'), metric.reference))}")
    return "; ".join(parts) or "-"


def table_lines(records: list[dict[str, Any]]) -> list[str]:
    columns = ("modality", "objective", "recipe", "steps", "metric", "trained", "random init")
    columns += ("other baselines", "train time (s)")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for rec in records:
        row: Row = rec["row"]
        first = f"| {row.modality} | {row.objective} | {row.recipe} |"
        if rec["status"] == "absent":
            continue
        if rec["status"] != "ok":
            what = "FAILED" if rec["status"] == "failed" else "skipped"
            what += f" ({rec['tag']})" if "source" in rec else ""
            where = f" (log {rec['log']})" if "wall_seconds" in rec else ""
            lines.append(f"{first} - | {what}: {rec['error'].replace('|', '/')}{where} | | | | |")
            continue
        m = rec["metrics"]
        trained, random_init = m.get("eval"), (m.get("baselines") or {}).get(RANDOM_INIT)
        # A real-data row shows the pretraining of the encoder it evaluated (its row's steps and time).
        source = rec.get("source")
        trained_by = source["metrics"] if source and source["status"] == "ok" else m
        steps = trained_by.get("steps", m.get("steps", "-"))
        train_s = trained_by.get("train_seconds")
        train_text = f"{train_s:.0f}" if isinstance(train_s, (int, float)) else "-"
        for metric in rec["shown"]:
            cells = [
                str(steps),
                metric.label,
                pct(lookup(trained, metric.key), std_of(trained, metric.key)),
                pct(lookup(random_init, metric.key), std_of(random_init, metric.key)),
                others(m, metric),
                train_text,
            ]
            lines.append(f"{first} " + " | ".join(cells) + " |")
    return lines


def eval_time_lines(records: list[dict[str, Any]]) -> list[str]:
    """The evaluation time of each finished real-data row (``eval_seconds``: trained + random init; and
    the wall time of the ``mmssl eval`` process when it ran in this invocation)."""
    parts = []
    for rec in records:
        if "source" not in rec or rec["status"] != "ok":
            continue
        text = f"{rec['tag']} {rec['metrics'].get('eval_seconds', '-')} s"
        if "wall_seconds" in rec:
            text += f" (process {rec['wall_seconds']} s)"
        parts.append(text)
    if not parts:
        return []
    return [
        "",
        "Real-data evaluation time (both encoders, metrics.json `eval_seconds`): " + "; ".join(parts) + ".",
    ]


def header_lines(args: argparse.Namespace, command: str) -> list[str]:
    lines = [
        "## Modality x objective: each recipe vs the same encoder at random init",
        "",
        f"`{command}`",
        "",
        "All figures are percentages (every evaluator reports fractions: accuracy, mIoU, J&F, recall; x 100, "
        "one decimal); ± is the std over the evaluator's draws (few-shot probes, part-segmentation seeds). "
        "'other baselines': the recipe's retrained baselines (texture statistics for audio) and the "
        "evaluator's own no-learning references (raw Lab colour for J&F, chance for zero-shot and R@1). "
        "'steps': pretraining steps run; 'train time': pretraining seconds (evaluation excluded).",
        "",
        "Rows whose metric names real data (ShapeNetPart, DAVIS) are evaluation only: the encoder the row "
        "above trained on built-in data (same steps and train time), scored by `mmssl eval` on real data "
        "against the same architecture at random init. ShapeNetPart: the 10-shot support from "
        f"{SHAPENETPART}'s train lists, scored on its test lists (8 categories, 224 points, 3 seeds as "
        f"the recipes' evaluation); DAVIS: the sequences of {DAVIS}, first {DAVIS_FRAMES} frames at a "
        "120-px short side, radius 6 cells (3 for VideoMAE's stride-8 grid).",
    ]
    if args.quick:
        lines += [
            "",
            f"**--quick: a smoke test of the script ({QUICK_STEPS} pretraining steps, minimal evaluation; "
            "real-data rows: one part-segmentation seed of 2 steps, 2 DAVIS sequences of 4 frames, whatever "
            "their labels say); the figures are meaningless.**",
        ]
    return lines + [""]


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", nargs="*", default=None, help="keep rows whose recipe contains any of these"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every run"
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps-fraction", type=float, default=None, help="F x each recipe's train.steps")
    budget.add_argument("--quick", action="store_true", help="smoke test: 2 steps, minimal evaluation")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--reuse", action="store_true", help="keep finished rows run with the same overrides")
    parser.add_argument("--no-run", action="store_true", help="only tabulate rows already finished in --out")
    parser.add_argument("--markdown-out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument(
        "--no-real", action="store_true", help="leave out the real-data evaluations (REAL_EVALS)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/modalities.py", *argv])
    if args.steps_fraction is not None and args.steps_fraction <= 0:
        raise SystemExit("--steps-fraction must be > 0")
    rows = [r for r in ROWS if args.rows is None or any(s in r.recipe for s in args.rows)]
    if not rows:
        raise SystemExit(
            f"--rows {' '.join(args.rows or [])}: no recipe matches ({', '.join(r.recipe for r in ROWS)})"
        )
    recipes = {r.recipe for r in rows}
    reals = [] if args.no_real else [spec for spec in REAL_EVALS if spec.recipe in recipes]
    out = args.out.expanduser().resolve()
    print(command, flush=True)
    if not args.no_run and not args.quick:
        pretrain_min, real_min = sum(r.minutes for r in rows), sum(s.minutes for s in reals)
        print(
            f"{len(rows)} rows; recipe headers estimate ~{pretrain_min:.0f} min at full steps (less for rows "
            f"reused); {len(reals)} real-data evaluations, ~{real_min:.0f} min",
            flush=True,
        )
    records = [run_row(row, args, out) for row in rows]
    by_recipe = {rec["row"].recipe: rec for rec in records}
    real_records = [run_real(spec, by_recipe[spec.recipe], args, out) for spec in reals]
    # Each real-data row right under the row whose encoder it evaluated.
    ordered: list[dict[str, Any]] = []
    for rec in records:
        ordered.append(rec)
        ordered += [r for r in real_records if r["source"] is rec]
    records = ordered
    missing = [rec["tag"] for rec in records if rec["status"] == "absent"]
    lines = header_lines(args, command) + table_lines(records) + eval_time_lines(records)
    text = "\n".join(lines)
    if missing:
        text += f"\n\nNot finished in {out} (not shown): {', '.join(missing)}"
    print("\n" + text, flush=True)
    if args.markdown_out is not None:
        args.markdown_out.parent.mkdir(parents=True, exist_ok=True)
        args.markdown_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
