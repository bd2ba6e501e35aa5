"""Same seed, same metrics? Run a set of recipes on shortened budgets and compare two runs of it.

A refactor that should not change behaviour is checked by running this script on the code before and
after it, then comparing::

    python benchmarks/recipe_parity.py run --out /tmp/parity_before     # on the old checkout
    python benchmarks/recipe_parity.py run --out /tmp/parity_after      # on the new one
    python benchmarks/recipe_parity.py compare /tmp/parity_before /tmp/parity_after
    python benchmarks/recipe_parity.py reload /tmp/parity_before --out /tmp/parity_reload   # new code
    python benchmarks/recipe_parity.py compare /tmp/parity_before /tmp/parity_reload

``run`` executes ``mmssl run`` for the quickstart and one recipe per modality with fewer training
steps and a lighter evaluation (the overrides are in ``SHORT`` below; ``--full`` keeps each recipe's
own budget) and stores each run's ``metrics.json``. ``reload`` evaluates each stored run's last
checkpoint with the current code (``mmssl eval``, same overrides): old checkpoints must load and give
the same evaluation. ``compare`` prints one row per metric: the two values,
their difference and whether they are bit-identical (timing figures are ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

#: recipe -> overrides that shorten it (fewer steps, fewer evaluation seeds); the seed is unchanged
SHORT: dict[str, list[str]] = {
    "quickstart": ["train.steps=60", "train.ckpt_every=30", "eval.few_shot.seeds=2"],
    "semi/fixmatch": ["train.steps=40", "train.ckpt_every=20"],
    "video/crw": ["train.steps=20", "train.ckpt_every=10", "data.num_propagation_sequences=3"],
    "audio/ambient_clusters": ["train.steps=40", "train.ckpt_every=20", "eval.few_shot.seeds=2"],
    "crossmodal/audio_visual": [
        "train.steps=30",
        "train.ckpt_every=15",
        "data.train_per_class=24",
        "eval.few_shot.seeds=2",
        "eval.modality_few_shot.seeds=2",
    ],
    "pointcloud/acd_10shot": [
        "train.steps=30",
        "train.ckpt_every=15",
        "eval.part_segmentation.seeds=1",
        "eval.part_segmentation.steps=20",
        "eval.part_segmentation.linear_epochs=5",
        "eval.part_segmentation.num_renders=0",
    ],
    "text/mlm": ["train.steps=30", "train.ckpt_every=15", "eval.few_shot.seeds=2"],
}
#: keys of metrics.json that measure time, not behaviour
TIMING = ("train_seconds", "train_samples_per_s", "eval_seconds", "tokens_per_s", "samples_per_s")
#: sections of metrics.json that describe the run rather than its results (how the data was read)
DESCRIPTIVE = ("data.",)


def run_all(out: Path, recipes: list[str], full: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for recipe in recipes:
        overrides = [] if full else SHORT.get(recipe, [])
        run_dir = out / recipe.replace("/", "_")
        cmd = [sys.executable, "-m", "mmssl.cli", "run", recipe, f"out_dir={run_dir}", "train.progress=false"]
        cmd += overrides
        print("$", " ".join(cmd[2:]), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        seconds = time.perf_counter() - t0
        (out / f"{run_dir.name}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            print(f"  FAILED (exit {proc.returncode}); see {out / (run_dir.name + '.log')}")
            summary[recipe] = {"error": proc.returncode}
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary[recipe] = {"seconds": round(seconds, 1), "overrides": overrides, "metrics": metrics}
        print(f"  {seconds:.0f} s")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def reload_all(before: Path, out: Path) -> None:
    """``mmssl eval`` of every stored run's checkpoint with the current code, stored as ``run`` does."""
    out.mkdir(parents=True, exist_ok=True)
    stored = json.loads((before / "summary.json").read_text())
    summary = {}
    for recipe, entry in stored.items():
        if "metrics" not in entry:
            continue
        run_dir = before / recipe.replace("/", "_")
        eval_dir = out / recipe.replace("/", "_")
        ckpt = run_dir / "checkpoints" / "last.pt"
        cmd = [sys.executable, "-m", "mmssl.cli", "eval", recipe, f"ckpt={ckpt}", f"out_dir={eval_dir}"]
        cmd += entry["overrides"]
        print("$", " ".join(cmd[2:]), flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        (out / f"{eval_dir.name}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            print(f"  FAILED (exit {proc.returncode})")
            summary[recipe] = {"error": proc.returncode}
            continue
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        # Training figures are not re-measured by an evaluation: keep the stored ones.
        for key in ("final_loss", "steps"):
            metrics[key] = entry["metrics"].get(key)
        summary[recipe] = {"overrides": entry["overrides"], "metrics": metrics}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not any(key.endswith(t) for t in TIMING) and not name.startswith(DESCRIPTIVE):
                flat[name] = float(value)
    return flat


def compare(before: Path, after: Path) -> int:
    a = json.loads((before / "summary.json").read_text())
    b = json.loads((after / "summary.json").read_text())
    differing = 0
    print(f"{'recipe':<26}{'metric':<44}{'before':>12}{'after':>12}{'diff':>11}  same")
    for recipe in a:
        if "metrics" not in a[recipe] or "metrics" not in b.get(recipe, {}):
            print(f"{recipe:<26}(missing or failed in one run)")
            differing += 1
            continue
        fa, fb = flatten(a[recipe]["metrics"]), flatten(b[recipe]["metrics"])
        for key in sorted(set(fa) | set(fb)):
            va, vb = fa.get(key, math.nan), fb.get(key, math.nan)
            same = va == vb
            differing += not same
            print(f"{recipe:<26}{key:<44}{va:>12.6g}{vb:>12.6g}{vb - va:>11.3g}  {'yes' if same else 'NO'}")
    print(f"{differing} metric(s) differ")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the recipes and store their metrics")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipes", nargs="*", default=list(SHORT))
    p.add_argument("--full", action="store_true", help="each recipe's own budget (slow)")
    p = sub.add_parser("reload", help="evaluate a stored run's checkpoints with the current code")
    p.add_argument("before", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("compare", help="compare two stored runs")
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run_all(args.out, args.recipes, args.full)
        return 0
    if args.command == "reload":
        reload_all(args.before, args.out)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
