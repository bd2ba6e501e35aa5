"""Every image SSL recipe at equal compute, and the semi-supervised recipes vs supervised-only.

Table 1: each ``recipes/image/*.yaml`` is pretrained on its built-in data for the same number of
training images, ``--images-seen`` = ``train.steps x train.batch_size`` (overrides
``train.steps=<images/batch> train.batch_size=<batch>``), with the same evaluation
(``eval.few_shot.shots=[1,5,10] eval.few_shot.seeds=5 eval.baselines=[random_init]``), and reports
few-shot / kNN / linear-probe accuracy of the trained encoder and of the same architecture untrained.
Everything else (optimiser, lr, warm-up, views, encoder) is the recipe's own. Checkpointing and the
progress bar are off (``train.ckpt_every=0 train.progress=false``) so train time is the loop's.

Table 2 (``--semi``, on by default): each ``recipes/semi/*.yaml`` at 4 and 10 labels per class
(``data.labels_per_class=N``), with the recipe's own training budget; the classifier's test accuracy
(``metrics["eval"]["classifier_top1"]``) vs the recipe's retrained ``supervised_only`` baseline
(``metrics["baselines"]["supervised_only"]["classifier_top1"]``). Then a domain-shift run of
``self_training`` with ``data.ood_fraction=0.3``, with the OOD guard off (``method.ood.guard=none``)
and with the recipe's guard, reporting accuracy and ``ood_dropped`` / ``ood_dropped_true_ood``.

Each run is a fresh subprocess (``--only <recipe> --json-out <file>``), so a crash is reported as a
FAILED row with the error's last line while the others go on; its log is ``<out>/<run>.log`` and its
run directory ``<out>/<run>``.

    .venv/bin/python benchmarks/image_methods.py                        # everything (long on a CPU)
    .venv/bin/python benchmarks/image_methods.py --recipes simclr byol --no-semi --images-seen 32000
    .venv/bin/python benchmarks/image_methods.py --recipes none --semi-recipes self_training
    .venv/bin/python benchmarks/image_methods.py --no-semi --images-seen 16000 --encoder-set stem_stride=2
    .venv/bin/python benchmarks/image_methods.py --quick --recipes simclr rotation --no-semi  # smoke test
    .venv/bin/python benchmarks/image_methods.py --only simclr --json-out /tmp/simclr.json   # one run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
DEFAULT_OUT = Path("runs") / "bench_image_methods"
SEMI_LABELS = (4, 10)
OOD_FRACTION = 0.3
OOD_RECIPE = "self_training"
SUPERVISED_BASELINE = "supervised_only"

# --quick: a smoke test of the harness, not a measurement.
QUICK_IMAGES, QUICK_BATCH = 32, 16  # 2 steps
QUICK_IMAGE_DATA = {"train_per_class": 12, "test_per_class": 4}
# semi_shapes needs more than labels_per_class train images per class and a pool of >= mu * batch.
QUICK_SEMI_DATA = {"train_per_class": 30, "test_per_class": 4}
QUICK_SEMI_STEPS = 2


# --------------------------------------------------------------------------- one run (child process)


def resolve(name: str) -> Path:
    """``simclr`` -> recipes/image/simclr.yaml (else recipes/semi/); ``semi/x`` -> recipes/semi/x.yaml."""
    candidates = [RECIPES / f"{name}.yaml"] if "/" in name else []
    candidates += [RECIPES / "image" / f"{name}.yaml", RECIPES / "semi" / f"{name}.yaml", Path(name)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"recipe '{name}' not found under {RECIPES}/image or {RECIPES}/semi")


def _data_overrides(path: Path, values: dict[str, int]) -> list[str]:
    """``data.key=value`` for the keys the recipe's dataset builder accepts (never a config error)."""
    from mmssl.config import load_raw
    from mmssl.options import option_names
    from mmssl.registry import DATASETS

    data = load_raw(path).get("data") or {}
    name = data if isinstance(data, str) else data.get("name")
    accepted = option_names(DATASETS.get(name), "dataset") if name else []
    return [f"data.{k}={v}" for k, v in values.items() if k in accepted]


def _encoder_overrides(path: Path, settings: list[str]) -> list[str]:
    """``encoder.key=value`` for each ``key=value`` of ``--encoder-set`` the recipe's encoder accepts
    (e.g. ``stem_stride=2`` reaches the CNN recipes and leaves the ViT ones alone)."""
    from mmssl.config import load_raw
    from mmssl.options import option_names
    from mmssl.registry import ENCODERS

    encoder = load_raw(path).get("encoder") or {}
    name = encoder if isinstance(encoder, str) else encoder.get("name")
    accepted = option_names(ENCODERS.get(name), "encoder") if name else []
    keys = [item.split("=", 1)[0] for item in settings]
    return [f"encoder.{item}" for key, item in zip(keys, settings) if key in accepted]


def run_overrides(path: Path, args: argparse.Namespace, out_dir: Path) -> list[str]:
    """The dotted overrides that put one recipe under the benchmark's settings."""
    common = ["train.ckpt_every=0", "train.progress=false", f"out_dir={out_dir}", "resume=null"]
    if path.parent.name == "semi":
        if args.quick:
            common += [f"train.steps={QUICK_SEMI_STEPS}", f"train.batch_size={QUICK_BATCH}"]
            common += _data_overrides(path, QUICK_SEMI_DATA)
        return common + list(args.set)
    images, batch = (QUICK_IMAGES, QUICK_BATCH) if args.quick else (args.images_seen, args.batch_size)
    shots, seeds = ([1], 2) if args.quick else ([1, 5, 10], 5)
    common += [
        f"train.steps={max(1, images // batch)}",
        f"train.batch_size={batch}",
        f"eval.few_shot.shots=[{','.join(map(str, shots))}]",
        f"eval.few_shot.seeds={seeds}",
        "eval.baselines=[random_init]",
    ]
    if args.quick:
        common += _data_overrides(path, QUICK_IMAGE_DATA)
    return common + _encoder_overrides(path, args.encoder_set) + list(args.set)


def run_one(args: argparse.Namespace) -> int:
    """Run one recipe in this process; write ``{"status", "metrics" | "error", ...}`` to --json-out."""
    record: dict[str, Any] = {"recipe": args.only, "status": "failed"}
    code = 1
    try:
        path = resolve(args.only)
        out_dir = Path(args.out) / (args.tag or path.stem)
        overrides = run_overrides(path, args, out_dir)
        record.update(path=str(path), overrides=overrides)
        print("overrides:", " ".join(overrides), flush=True)

        from mmssl import pipeline
        from mmssl.config import load_recipe

        cfg = load_recipe(path, overrides)
        metrics = pipeline.run(cfg)
        record.update(status="ok", metrics=metrics)
        code = 0
    except Exception as err:  # reported as a FAILED row by the parent
        traceback.print_exc()
        record["error"] = f"{type(err).__name__}: {err}".strip().splitlines()[-1]
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(record, indent=2, default=str))
    return code


# --------------------------------------------------------------------------- orchestration


def discover(kind: str, names: list[str] | None) -> list[str]:
    """CPU recipe stems in ``recipes/<kind>/`` (all, or the named subset in the given order); the GPU
    profiles (``*_gpu``) need CUDA."""
    found = sorted(p.stem for p in (RECIPES / kind).glob("*.yaml") if not p.stem.endswith("_gpu"))
    if names is None:
        return found
    names = [n for n in names if n.lower() != "none"]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise SystemExit(f"unknown {kind} recipe(s): {', '.join(unknown)}; available: {', '.join(found)}")
    return names


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def spawn(recipe: str, tag: str, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Run ``--only recipe`` in a subprocess; its record (a FAILED one if it crashed)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, log_path = out / f"{tag}.json", out / f"{tag}.log"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", recipe, "--tag", tag]
    cmd += ["--json-out", str(json_path), "--out", str(out)]
    cmd += ["--images-seen", str(args.images_seen), "--batch-size", str(args.batch_size)]
    cmd += ["--quick"] if args.quick else []
    for override in list(args.set) + extra:
        cmd += ["--set", override]
    for setting in args.encoder_set:
        cmd += ["--encoder-set", setting]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: running (log {log_path})", flush=True)
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    record: dict[str, Any] = {}
    if json_path.is_file():
        record = json.loads(json_path.read_text())
    if not record:
        record = {"recipe": recipe, "status": "failed", "error": _last_line(log_path.read_text())}
    if proc.returncode != 0 and record.get("status") == "ok":
        record.update(status="failed", error=f"exit code {proc.returncode}")
    record.update(tag=tag, wall_seconds=round(time.perf_counter() - t0, 1))
    status = "ok" if record["status"] == "ok" else f"FAILED ({record.get('error', '?')})"
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: {status} in {record['wall_seconds']} s", flush=True)
    return record


def _pct(value: Any, std: Any = None) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{100 * value:.1f} ± {100 * std:.1f}" if isinstance(std, (int, float)) else f"{100 * value:.1f}"


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


def _failed(record: dict[str, Any]) -> str:
    return "FAILED: " + str(record.get("error", "?")).replace("|", "/")


def image_table(records: list[dict[str, Any]], shot: int) -> str:
    head = (
        f"| recipe | {shot}-shot accuracy (mean ± std) | kNN | linear | train time (s) | "
        f"random-init {shot}-shot | random-init kNN | random-init linear |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {r['tag']} | {_failed(r)} | - | - | - | - | - | - |")
            continue
        m = r["metrics"]
        ev, rnd = m["eval"], m["baselines"].get("random_init", {})
        few, std = f"fewshot_{shot}_mean", f"fewshot_{shot}_std"
        cells = [
            r["tag"],
            _pct(ev.get(few), ev.get(std)),
            _pct(ev.get("knn_top1")),
            _pct(ev.get("linear_top1")),
            _num(m.get("train_seconds")),
            _pct(rnd.get(few), rnd.get(std)),
            _pct(rnd.get("knn_top1")),
            _pct(rnd.get("linear_top1")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def semi_table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| recipe | labels/class | accuracy | supervised-only | gain | train time (s) |",
        "|" + "---|" * 6,
    ]
    for r in records:
        name, labels = r["tag"].rsplit("_l", 1)
        if r["status"] != "ok":
            lines.append(f"| {name} | {labels} | {_failed(r)} | - | - | - |")
            continue
        m = r["metrics"]
        acc = m["eval"].get("classifier_top1")
        sup = m["baselines"].get(SUPERVISED_BASELINE, {}).get("classifier_top1")
        gain = f"{100 * (acc - sup):+.1f}" if acc is not None and sup is not None else "-"
        cells = [name, labels, _pct(acc), _pct(sup), gain, _num(m.get("train_seconds"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ood_table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| run | OOD guard | accuracy | pool OOD | ood_dropped | ood_dropped_true_ood | "
        "pseudo-labelled (OOD) |",
        "|" + "---|" * 7,
    ]
    for r in records:
        guard = r.get("guard", "?")
        if r["status"] != "ok":
            lines.append(f"| {r['tag']} | {guard} | {_failed(r)} | - | - | - | - |")
            continue
        ev = r["metrics"]["eval"]
        pseudo = (
            f"{ev['pseudo_labelled']} ({_num(ev.get('pseudo_labelled_ood'))})"
            if "pseudo_labelled" in ev
            else "-"
        )
        cells = [
            r["tag"],
            guard,
            _pct(ev.get("classifier_top1")),
            _num(ev.get("pool_ood")),
            _num(ev.get("ood_dropped")),
            _num(ev.get("ood_dropped_true_ood")),
            pseudo,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recipe_guard(name: str) -> str:
    from mmssl.config import load_raw

    method = load_raw(resolve(f"semi/{name}")).get("method") or {}
    ood = method.get("ood") if isinstance(method, dict) else None
    return str(ood.get("guard", "none")) if isinstance(ood, dict) else "none"


def orchestrate(args: argparse.Namespace) -> int:
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    image_names = discover("image", args.recipes)
    semi_names = discover("semi", args.semi_recipes) if args.semi else []
    images, batch = (QUICK_IMAGES, QUICK_BATCH) if args.quick else (args.images_seen, args.batch_size)
    shot = 1 if args.quick else 10

    image_records = [spawn(n, n, args, []) for n in image_names]
    semi_records = [
        spawn(f"semi/{n}", f"{n}_l{k}", args, [f"data.labels_per_class={k}"])
        for n in semi_names
        for k in SEMI_LABELS
    ]
    ood_records = []
    if args.semi and OOD_RECIPE in semi_names:
        guard = recipe_guard(OOD_RECIPE)
        guards = ["none"] + ([guard] if guard != "none" else ["knn"])
        for g in guards:
            extra = [f"data.ood_fraction={OOD_FRACTION}", f"method.ood.guard={g}", "eval.baselines=[]"]
            record = spawn(f"semi/{OOD_RECIPE}", f"{OOD_RECIPE}_ood{OOD_FRACTION}_{g}", args, extra)
            ood_records.append({**record, "guard": g})

    parts = [f"Command: `{command}`", ""]
    if image_records:
        parts += [
            f"### Image methods at equal compute ({images} training images: {max(1, images // batch)} steps "
            f"x batch {batch}{'; --quick smoke settings' if args.quick else ''})",
            "",
            image_table(image_records, shot),
            "",
        ]
    if semi_records:
        parts += [
            "### Semi-supervised vs supervised-only (recipe training budgets)",
            "",
            semi_table(semi_records),
            "",
        ]
    if ood_records:
        parts += [
            f"### Domain shift: {OOD_RECIPE} with data.ood_fraction={OOD_FRACTION}",
            "",
            ood_table(ood_records),
            "",
        ]
    text = "\n".join(parts)
    print("\n" + text)
    if args.markdown_out:
        Path(args.markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown_out).write_text(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": command, "image": image_records, "semi": semi_records, "ood": ood_records}
        Path(args.json_out).write_text(json.dumps(payload, indent=2, default=str))
    records = image_records + semi_records + ood_records
    return 1 if any(r["status"] != "ok" for r in records) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=None, help="image recipes to run (default: all; 'none')")
    p.add_argument("--semi-recipes", nargs="+", default=None, help="semi recipes to run (default: all)")
    p.add_argument("--only", help="run this one recipe in this process (used by the orchestrator)")
    p.add_argument("--tag", help=argparse.SUPPRESS)  # run name under --out (child processes)
    p.add_argument("--set", action="append", default=[], help="extra dotted override (repeatable)")
    p.add_argument(
        "--encoder-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="encoder option for the image recipes whose encoder accepts KEY (repeatable)",
    )
    p.add_argument("--images-seen", type=int, default=64000, help="training images per image recipe")
    p.add_argument("--batch-size", type=int, default=128, help="training batch of every image recipe")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="parent folder of the run directories")
    p.add_argument("--json-out", help="write the results as JSON here")
    p.add_argument("--markdown-out", help="write the tables (markdown) here")
    p.add_argument("--semi", action=argparse.BooleanOptionalAction, default=True, help="semi tables")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of this script")
    args = p.parse_args(argv)
    if args.images_seen < 1 or args.batch_size < 1:
        p.error("--images-seen and --batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_one(args) if args.only else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
