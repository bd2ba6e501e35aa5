"""Every CIFAR-10 image recipe at equal compute, over pretraining seeds, beside published anchors.

Table 1: each CPU profile ``recipes/image/cifar10/<method>.yaml`` (the ``*_gpu.yaml`` profiles are left
out) is pretrained on the 45,000 CIFAR-10 training images at equal compute, in one of two ways:
``--budget-fraction F`` (an equal share of each profile's CPU budget) keeps each recipe's batch size
and runs ``F x`` its ``train.steps``; the CPU profiles are each sized to at most 30 minutes on 2 cores
(their comments give the measured s/step: SimCLR's, BYOL's, MAE's, context's and inpainting's on an idle
machine, the others' while other jobs shared the cores, so these finish sooner on an idle machine):
every method gets at most the same training time.
``--images-seen N`` (equal data) gives every recipe ``N / --batch-size`` steps of ``--batch-size``.
Evaluation is the same for all, on the validation split (the last 500 images of each class): kNN (k 200,
tau 0.07), linear probe, 1/10/100-shot probes (5 draws), each against the same architecture at random
initialisation (``eval.baselines=[random_init]``), and the online kNN monitor about 5 times per run
(``eval.monitor.every = steps // 5``). Everything else (optimiser, lr, warm-up, views, encoder) is the
recipe's own: the lr is not rescaled for the batch, and "images" are source images (RotNet shows each in
four rotations, SimCLR/MoCo/BYOL in two views). SimCLR, BYOL and MAE are pretrained with every seed of
``--seeds`` (``train.seed``: initialisation, augmentation, data order), the others with
``--other-seeds``; figures are the mean ± std over pretraining seeds (one seed: the value alone). The
monitor curves of all runs are collected in ``<out>/monitor_curves.csv`` (recipe, seed, step,
monitor_knn_top1).

Table 3 prints the published figures beside ours with their budgets (:data:`ANCHORS`); they are not
the same protocol (see each entry's ``note``).

Table 2 (``--semi``): each CPU profile ``recipes/semi/cifar10/<method>.yaml`` (``--semi-methods``, default
all) at 4 and 25 labels per class (``data.labels_per_class``) x ``--semi-seeds`` (``train.seed``: label
draw, init, augmentation), with the recipe's own budget (``--semi-steps`` to change it), classifier
accuracy on the validation split vs the recipe's supervised-only baseline retrained on the same labels
for the same steps; mean ± std over seeds, and the paired gain with its standard error (std / sqrt(n)).

Each run is a fresh subprocess (``--only <recipe> --json-out <file>``): a crash becomes a FAILED row and the
others go on; its log is ``<out>/<run>.log`` and its run directory ``<out>/<run>``.

``--quick`` is a smoke test of this script, not a measurement: a symlinked subset of the data (60 images
per class, 10 of them held out as validation) under ``<out>/quick_data``, 2 steps of 16, 1/10-shot with
one draw.

    .venv/bin/python benchmarks/cifar10.py --budget-fraction 0.2                # 9 recipes, 3 seeds for 3
    .venv/bin/python benchmarks/cifar10.py --images-seen 256000                 # equal data instead
    .venv/bin/python benchmarks/cifar10.py --recipes simclr byol --seeds 0 1 --images-seen 128000
    .venv/bin/python benchmarks/cifar10.py --recipes none --semi                # semi methods only
    .venv/bin/python benchmarks/cifar10.py --recipes none --semi --semi-methods fixmatch --semi-steps 2000
    .venv/bin/python benchmarks/cifar10.py --quick --recipes simclr rotation    # smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPE_DIR = ROOT / "recipes" / "image" / "cifar10"
SEMI_RECIPE_DIR = ROOT / "recipes" / "semi" / "cifar10"
DATA = Path("../shared/data/images/cifar10/train")  # relative to ROOT, as in the recipes
DEFAULT_OUT = Path("runs") / "bench_cifar10"
NUM_TRAIN = 45_000  # training images after holding out the last 500 per class
MULTI_SEED = ("simclr", "byol", "mae")
SHOTS = (1, 10, 100)
FEW_SHOT_DRAWS = 5
MONITOR_POINTS = 5
SEMI_LABELS = (4, 25)
SUPERVISED_BASELINE = "supervised_only"
METRICS = [f"fewshot_{n}" for n in SHOTS] + ["knn_top1", "linear_top1"]

# --quick: a smoke test of the harness, not a measurement.
QUICK_IMAGES, QUICK_BATCH = 32, 16  # 2 steps
QUICK_PER_CLASS, QUICK_VAL = 60, 10
QUICK_SHOTS = (1, 10)
QUICK_SEMI_STEPS = 2

# Published figures (CIFAR-10, ResNet-18). Copied from the solo-learn README's CIFAR-10 table
# (github.com/vturrisi/solo-learn, README.md at commit 5226562, read through this project's code index):
# "Acc@1" is solo-learn's online linear classifier (trained on augmented views alongside pretraining, a
# stop-gradient on the features) on the official CIFAR-10 test set, after 1000 epochs of the 50,000
# training images. solo-learn reports no kNN figure for CIFAR-10 in that table: None, not a number.
# An earlier version of the same README (commit 0126879) listed 91.88 for MoCo V2+ (the same number as its
# NNCLR row); the later table gives 92.94.
ANCHORS: dict[str, dict[str, Any]] = {
    "simclr": {
        "method": "SimCLR",
        "linear_top1": 90.74,
        "knn_top1": None,
        "budget": "ResNet-18 (CIFAR stem), 1000 epochs x 50,000 images, batch 256, LARS",
        "source": "solo-learn README, CIFAR-10 table (Acc@1, online linear, test set)",
    },
    "moco_v2": {
        "method": "MoCo V2+",
        "linear_top1": 92.94,
        "knn_top1": None,
        "budget": "ResNet-18 (CIFAR stem), 1000 epochs x 50,000 images, batch 256, SGD, queue 32,768",
        "source": "solo-learn README, CIFAR-10 table (Acc@1, online linear, test set)",
    },
    "byol": {
        "method": "BYOL",
        "linear_top1": 92.58,
        "knn_top1": None,
        "budget": "ResNet-18 (CIFAR stem), 1000 epochs x 50,000 images, batch 256, LARS",
        "source": "solo-learn README, CIFAR-10 table (Acc@1, online linear, test set)",
    },
    "mae": {
        "method": "MAE",
        "linear_top1": None,
        "knn_top1": None,
        "budget": "-",
        "source": "none: the MAE paper reports ImageNet only; the solo-learn README has no CIFAR-10 MAE row",
    },
}


# --------------------------------------------------------------------------- one run (child process)


def run_one(args: argparse.Namespace) -> int:
    """Run one recipe in this process with ``--set`` overrides; write a record to --json-out."""
    record: dict[str, Any] = {"recipe": args.only, "status": "failed", "overrides": list(args.set)}
    code = 1
    try:
        from mmssl import pipeline
        from mmssl.config import load_recipe

        print("overrides:", " ".join(args.set), flush=True)
        metrics = pipeline.run(load_recipe(Path(args.only), list(args.set)))
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


def discover(directory: Path, names: list[str] | None) -> list[str]:
    """CPU-profile stems in ``directory`` (all, or the named ones in the given order; 'none': none)."""
    found = sorted(p.stem for p in directory.glob("*.yaml") if not p.stem.endswith("_gpu"))
    if names is None:
        return found
    names = [n for n in names if n.lower() != "none"]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise SystemExit(
            f"unknown recipe(s) in {directory}: {', '.join(unknown)}; available: {', '.join(found)}"
        )
    return names


def quick_data(out: Path) -> Path:
    """A folder of symlinks to the first QUICK_PER_CLASS images of each class (for --quick)."""
    source = (ROOT / DATA).resolve()
    if not source.is_dir():
        raise SystemExit(f"CIFAR-10 images not found at {source}")
    target = (out / "quick_data").resolve()
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        dest = target / class_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.iterdir())[:QUICK_PER_CLASS]:
            link = dest / image.name
            if not link.exists():
                link.symlink_to(image)
    return target


def recipe_budget(args: argparse.Namespace, name: str) -> tuple[int, int]:
    """(steps, batch size) of one recipe's benchmark run under --quick, --budget-fraction or --images-seen."""
    if args.quick:
        return max(1, QUICK_IMAGES // QUICK_BATCH), QUICK_BATCH
    if args.budget_fraction is not None:
        from mmssl.config import load_raw  # with any base files the recipe names

        train = load_raw(RECIPE_DIR / f"{name}.yaml")["train"]
        return max(1, round(args.budget_fraction * int(train["steps"]))), int(train["batch_size"])
    return max(1, args.images_seen // args.batch_size), args.batch_size


def image_overrides(
    args: argparse.Namespace, name: str, seed: int, run_dir: Path, data: Path | None
) -> list[str]:
    steps, batch = recipe_budget(args, name)
    shots, draws = (QUICK_SHOTS, 1) if args.quick else (SHOTS, FEW_SHOT_DRAWS)
    sets = [
        f"train.steps={steps}",
        f"train.batch_size={batch}",
        f"train.seed={seed}",
        "train.ckpt_every=0",
        "train.progress=false",
        f"out_dir={run_dir}",
        "resume=null",
        f"eval.monitor.every={max(1, steps // MONITOR_POINTS)}",
        f"eval.few_shot.shots=[{','.join(map(str, shots))}]",
        f"eval.few_shot.seeds={draws}",
        "eval.baselines=[random_init]",
    ]
    if data is not None:
        sets += [f"data.splits.train={data}", f"data.splits.val={{last_per_class: {QUICK_VAL}}}"]
    return sets + list(args.set)


def semi_overrides(
    args: argparse.Namespace, labels: int, seed: int, run_dir: Path, data: Path | None
) -> list[str]:
    sets = [
        f"data.labels_per_class={labels}",
        f"train.seed={seed}",
        "train.ckpt_every=0",
        "train.progress=false",
        f"out_dir={run_dir}",
        "resume=null",
    ]
    if args.quick:
        sets += [
            f"train.steps={QUICK_SEMI_STEPS}",
            f"data.labelled={data}",
            f"data.val={{last_per_class: {QUICK_VAL}}}",
        ]
    elif args.semi_steps:
        sets.append(f"train.steps={args.semi_steps}")
    return sets + list(args.semi_set)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def reusable(json_path: Path, overrides: list[str]) -> dict[str, Any] | None:
    """The finished record at ``json_path`` if it ran with exactly these overrides, else None."""
    if not json_path.is_file():
        return None
    record = json.loads(json_path.read_text())
    if record.get("status") != "ok" or record.get("overrides") != overrides:
        return None
    return record


def spawn(
    recipe: Path, tag: str, overrides: list[str], out: Path, reuse: bool = False, run: bool = True
) -> dict[str, Any]:
    """Run ``--only recipe`` in a subprocess; its record (a FAILED one if it crashed).

    ``reuse``: a finished record of the same run (same overrides) is returned instead of running again,
    so an interrupted benchmark continues where it stopped; ``run=False`` only collects such records.
    """
    out.mkdir(parents=True, exist_ok=True)
    json_path, log_path = out / f"{tag}.json", out / f"{tag}.log"
    previous = reusable(json_path, overrides) if reuse or not run else None
    if previous is not None:
        print(f"[{time.strftime('%H:%M:%S')}] {tag}: reusing the finished run in {json_path}", flush=True)
        return {**previous, "tag": tag}
    if not run:
        return {"recipe": str(recipe), "status": "failed", "error": "not run (--no-run)", "tag": tag}
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", str(recipe), "--json-out", str(json_path)]
    for override in overrides:
        cmd += ["--set", override]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: running (log {log_path})", flush=True)
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    record: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if not record:
        record = {"recipe": str(recipe), "status": "failed", "error": _last_line(log_path.read_text())}
    if proc.returncode != 0 and record.get("status") == "ok":
        record.update(status="failed", error=f"exit code {proc.returncode}")
    record.update(tag=tag, wall_seconds=round(time.perf_counter() - t0, 1))
    status = "ok" if record["status"] == "ok" else f"FAILED ({record.get('error', '?')})"
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: {status} in {record['wall_seconds']} s", flush=True)
    return record


# --------------------------------------------------------------------------- aggregation and tables


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _metric(section: dict[str, Any], name: str) -> float | None:
    """A metric of an ``eval`` / baseline section; few-shot as the mean over its draws."""
    value = section.get(f"{name}_mean", section.get(name))
    return float(value) if isinstance(value, (int, float)) else None


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"


def summarise(recipe: str, records: list[dict[str, Any]], budget: tuple[int, int]) -> dict[str, Any]:
    """Per-metric mean ± std over the pretraining seeds that finished, trained and random init."""
    ok = [r for r in records if r["status"] == "ok"]
    summary: dict[str, Any] = {
        "recipe": recipe,
        "steps": budget[0],
        "batch_size": budget[1],
        "seeds": [r["seed"] for r in ok],
        "failed": [f"seed {r['seed']}: {r.get('error', '?')}" for r in records if r["status"] != "ok"],
        "encoder": ok[0]["metrics"].get("encoder") if ok else None,
        "train_seconds": mean_std(
            [r["metrics"]["train_seconds"] for r in ok if r["metrics"].get("train_seconds")]
        )[0],
    }
    for side, pick in (
        ("trained", lambda m: m["eval"]),
        ("random_init", lambda m: m["baselines"].get("random_init", {})),
    ):
        summary[side] = {}
        for name in METRICS:
            values = [v for v in (_metric(pick(r["metrics"]), name) for r in ok) if v is not None]
            mean, std = mean_std(values)
            summary[side][name] = {"mean": mean, "std": std, "n": len(values)}
    return summary


def results_table(summaries: list[dict[str, Any]], side: str, shots: tuple[int, ...]) -> str:
    names = [f"fewshot_{n}" for n in shots] + ["knn_top1", "linear_top1"]
    heads = [f"{n}-shot" for n in shots] + ["kNN", "linear"]
    extra = ["train time (s)"] if side == "trained" else []
    lines = [
        "| recipe | encoder | steps x batch | seeds | " + " | ".join(heads + extra) + " |",
        "|" + "---|" * (4 + len(heads) + len(extra)),
    ]
    for s in summaries:
        if not s["seeds"]:
            failed = "; ".join(s["failed"]).replace("|", "/")
            lines.append(f"| {s['recipe']} | - | - | 0 | FAILED: {failed} |")
            continue
        budget = f"{s['steps']} x {s['batch_size']}"
        cells = [s["recipe"], str(s["encoder"]), budget, ",".join(map(str, s["seeds"]))]
        cells += [_pct(s[side][n]["mean"], s[side][n]["std"]) for n in names]
        if extra:
            cells.append("-" if s["train_seconds"] is None else f"{s['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def anchor_table(summaries: list[dict[str, Any]]) -> str:
    ours = {s["recipe"]: s for s in summaries}
    lines = [
        "| method | published linear | published kNN | published budget | source "
        "| ours: linear | ours: kNN | our budget |",
        "|" + "---|" * 8,
    ]
    for key, anchor in ANCHORS.items():
        s = ours.get(key)
        lin = (
            _pct(s["trained"]["linear_top1"]["mean"], s["trained"]["linear_top1"]["std"])
            if s and s["seeds"]
            else "not run"
        )
        knn = (
            _pct(s["trained"]["knn_top1"]["mean"], s["trained"]["knn_top1"]["std"])
            if s and s["seeds"]
            else "not run"
        )
        pub_lin = "-" if anchor["linear_top1"] is None else f"{anchor['linear_top1']:.2f}"
        pub_knn = "not reported" if anchor["knn_top1"] is None else f"{anchor['knn_top1']:.2f}"
        images = s["steps"] * s["batch_size"] if s else 0
        budget = (
            f"{s['encoder']}, {images:,} images ({images / NUM_TRAIN:.2f} epochs of 45,000), "
            f"batch {s['batch_size']}"
            if s and s["seeds"]
            else "-"
        )
        lines.append(
            f"| {anchor['method']} | {pub_lin} | {pub_knn} | {anchor['budget']} | {anchor['source']} "
            f"| {lin} | {knn} | {budget} |"
        )
    return "\n".join(lines)


def semi_table(records: list[dict[str, Any]], methods: list[str]) -> str:
    lines = [
        "| method | labels/class | seeds | method acc. | supervised-only | gain | gain / SE "
        "| train time (s) |",
        "|" + "---|" * 8,
    ]
    for method, labels in ((m, n) for m in methods for n in SEMI_LABELS):
        runs = [r for r in records if r["labels"] == labels and r["method"] == method]
        ok = [r for r in runs if r["status"] == "ok"]
        if not runs:
            continue
        if not ok:
            errors = "; ".join(str(r.get("error", "?")) for r in runs).replace("|", "/")
            lines.append(f"| {method} | {labels} | 0 | FAILED: {errors} | - | - | - | - |")
            continue
        acc = [r["metrics"]["eval"]["classifier_top1"] for r in ok]
        sup = [r["metrics"]["baselines"].get(SUPERVISED_BASELINE, {}).get("classifier_top1") for r in ok]
        sup = [v for v in sup if v is not None]
        gains = [a - b for a, b in zip(acc, sup)] if len(sup) == len(acc) else []
        g_mean, g_std = mean_std(gains)
        ratio = "-" if not g_std else f"{g_mean / (g_std / math.sqrt(len(gains))):+.1f}"
        gain = (
            "-"
            if g_mean is None
            else (f"{100 * g_mean:+.1f}" + (f" ± {100 * g_std:.1f}" if g_std is not None else ""))
        )
        secs = mean_std([r["metrics"]["train_seconds"] for r in ok if r["metrics"].get("train_seconds")])[0]
        cells = [
            method,
            str(labels),
            ",".join(str(r["seed"]) for r in ok),
            _pct(*mean_std(acc)),
            _pct(*mean_std(sup)),
            gain,
            ratio,
            "-" if secs is None else f"{secs:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_monitor_curves(records: list[dict[str, Any]], path: Path) -> int:
    """One CSV of every run's online kNN monitor (recipe, seed, step, monitor_knn_top1); rows written."""
    rows = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["recipe", "seed", "step", "monitor_knn_top1"])
        for r in records:
            jsonl = Path(r["run_dir"]) / "metrics.jsonl"
            if not jsonl.is_file():
                continue
            for line in jsonl.read_text().splitlines():
                entry = json.loads(line)
                if "monitor_knn_top1" in entry:
                    writer.writerow([r["recipe_name"], r["seed"], entry["step"], entry["monitor_knn_top1"]])
                    rows += 1
    return rows


def budget_words(args: argparse.Namespace) -> str:
    if args.quick:
        return f"{QUICK_IMAGES} images, batch {QUICK_BATCH}"
    if args.budget_fraction is not None:
        share = "an equal share of each CPU budget"
        return f"{args.budget_fraction:g} x each CPU profile's steps at its own batch size: {share}"
    return f"{args.images_seen:,} training images each, batch {args.batch_size}: equal data"


def orchestrate(args: argparse.Namespace) -> int:
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    out = Path(args.out)
    names = discover(RECIPE_DIR, args.recipes)
    data = quick_data(out) if args.quick else None
    budgets = {name: recipe_budget(args, name) for name in names}

    # Seed-major order: every recipe's first seed before any recipe's second, so a benchmark stopped
    # early (and continued with --reuse) has one run of every method first.
    seed_lists = {name: args.seeds if name in args.multi_seed else args.other_seeds for name in names}
    order = sorted(
        ((name, seed) for name in names for seed in seed_lists[name]),
        key=lambda pair: (seed_lists[pair[0]].index(pair[1]), names.index(pair[0])),
    )
    image_records: list[dict[str, Any]] = []
    for name, seed in order:
        tag = f"{name}_s{seed}"
        run_dir = out / tag
        sets = image_overrides(args, name, seed, run_dir, data)
        record = spawn(RECIPE_DIR / f"{name}.yaml", tag, sets, out, reuse=args.reuse, run=not args.no_run)
        image_records.append({**record, "recipe_name": name, "seed": seed, "run_dir": str(run_dir)})
    summaries = [summarise(n, [r for r in image_records if r["recipe_name"] == n], budgets[n]) for n in names]
    curves = out / "monitor_curves.csv"
    curve_rows = write_monitor_curves(image_records, curves) if image_records else 0

    semi_methods = discover(SEMI_RECIPE_DIR, args.semi_methods)
    semi_records: list[dict[str, Any]] = []
    if args.semi:
        # Seed-major again: one seed of every (method, labels) before the second.
        for seed in args.semi_seeds:
            for method in semi_methods:
                for labels in SEMI_LABELS:
                    tag = f"semi_{method}_l{labels}_s{seed}"
                    sets = semi_overrides(args, labels, seed, out / tag, data)
                    recipe = SEMI_RECIPE_DIR / f"{method}.yaml"
                    record = spawn(recipe, tag, sets, out, reuse=args.reuse, run=not args.no_run)
                    semi_records.append({**record, "method": method, "labels": labels, "seed": seed})

    shots = QUICK_SHOTS if args.quick else SHOTS
    quick = "; --quick smoke settings on a 600-image subset, not a measurement" if args.quick else ""
    parts = [f"Command: `{command}`", ""]
    if image_records:
        parts += [
            f"### CIFAR-10 image recipes at equal compute ({budget_words(args)}; figures on val, the last "
            f"{QUICK_VAL if args.quick else 500} images per class; "
            f"mean ± std over pretraining seeds{quick})",
            "",
            results_table(summaries, "trained", shots),
            "",
            "Same architectures at random initialisation (initialised with each run's seed):",
            "",
            results_table(summaries, "random_init", shots),
            "",
            f"Online kNN monitor curves ({curve_rows} points, about {MONITOR_POINTS} per run): `{curves}`; "
            "loss curves: `<run>/loss_curve.png`.",
            "",
            "### Published anchors (different protocol: online linear classifier on the CIFAR-10 test set "
            "after 1000 epochs; ours: frozen-feature probes on val)",
            "",
            anchor_table(summaries),
            "",
        ]
    if semi_records:
        budget = (
            "recipe budget"
            if not (args.quick or args.semi_steps)
            else f"{QUICK_SEMI_STEPS if args.quick else args.semi_steps} steps"
        )
        parts += [
            f"### Semi-supervised methods vs supervised-only on CIFAR-10 ({budget}; classifier accuracy "
            f"on val, mean ± std over seeds; gain / SE > 2: a gain beyond two standard errors{quick})",
            "",
            semi_table(semi_records, semi_methods),
            "",
        ]
    text = "\n".join(parts)
    print("\n" + text)
    if args.markdown_out:
        Path(args.markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown_out).write_text(text)
    json_path = Path(args.json_out) if args.json_out else out / "results.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "anchors": ANCHORS,
        "summaries": summaries,
        "image": image_records,
        "semi": semi_records,
        "monitor_curves": str(curves),
    }
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"results: {json_path}")
    records = image_records + semi_records
    return 1 if any(r["status"] != "ok" for r in records) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--recipes", nargs="+", default=None, help="CIFAR-10 recipes to run (default: all; 'none')"
    )
    p.add_argument("--images-seen", type=int, default=256_000, help="training images per recipe and seed")
    p.add_argument("--batch-size", type=int, default=256, help="training batch of every recipe")
    p.add_argument(
        "--budget-fraction",
        type=float,
        default=None,
        help="run this fraction of each recipe's own steps at its own batch (equal share of each budget); "
        "overrides --images-seen / --batch-size",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="pretraining seeds of --multi-seed"
    )
    p.add_argument("--other-seeds", type=int, nargs="+", default=[0], help="pretraining seeds of the others")
    p.add_argument("--multi-seed", nargs="+", default=list(MULTI_SEED), help="recipes run with every --seeds")
    p.add_argument("--set", action="append", default=[], help="extra dotted override for the image runs")
    p.add_argument("--semi", action=argparse.BooleanOptionalAction, default=False, help="semi table")
    p.add_argument("--semi-methods", nargs="+", default=None, help="semi CPU profiles (default: all)")
    p.add_argument("--semi-seeds", type=int, nargs="+", default=[0, 1, 2], help="semi seeds")
    p.add_argument("--semi-steps", type=int, default=None, help="semi steps (default: each recipe's)")
    p.add_argument("--semi-set", action="append", default=[], help="extra dotted override for the semi runs")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="parent folder of the run directories")
    p.add_argument("--json-out", help="write all records and summaries here (default <out>/results.json)")
    p.add_argument("--markdown-out", help="write the tables (markdown) here")
    p.add_argument(
        "--reuse", action="store_true", help="keep finished runs with the same overrides (continue)"
    )
    p.add_argument("--no-run", action="store_true", help="only tabulate the finished runs in --out")
    p.add_argument("--quick", action="store_true", help="tiny settings on a data subset: a smoke test")
    p.add_argument("--only", help=argparse.SUPPRESS)  # child process: run this recipe file
    args = p.parse_args(argv)
    if args.images_seen < 1 or args.batch_size < 1:
        p.error("--images-seen and --batch-size must be >= 1")
    if args.budget_fraction is not None and args.budget_fraction <= 0:
        p.error("--budget-fraction must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_one(args) if args.only else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
