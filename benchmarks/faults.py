"""Kill-and-resume cycles: does a run that is killed again and again end exactly where an uninterrupted
run ends?

A small recipe (``quickstart`` cut to ``--steps`` steps of batch ``--batch-size``, a checkpoint every
``--ckpt-every`` steps, one data-loader worker) is trained once without interruption, then again while
this script kills it at random steps, ``--cycles`` times in all: SIGKILL (no warning: the run loses the
steps since its last checkpoint) or SIGTERM (the trainer checkpoints at the next step boundary and exits
with 143), chosen at random. After each kill it is started again with ``resume=auto``, until it finishes.
A run absorbs as many kills as it can; new runs start until the cycles are used up.

Reported: cycles (SIGKILL / SIGTERM), divergences (finished runs whose final checkpoint differs from the
uninterrupted one in any tensor: the goal is 0), and the time lost per cycle (the interrupted runs'
wall time less the uninterrupted run's, over the cycles; process start-up included, as it is what a
preempted job pays).

    .venv/bin/python benchmarks/faults.py                     # 50 cycles, ~5-10 min on 2 cores
    .venv/bin/python benchmarks/faults.py --cycles 4 --steps 30  # quick
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "mmssl.cli", "train", "quickstart",
        f"out_dir={run_dir}", "resume=auto",
        f"train.steps={args.steps}", f"train.batch_size={args.batch_size}",
        f"train.ckpt_every={args.ckpt_every}", "train.log_every=1", "train.progress=false",
        "train.warmup_steps=2", "data.train_per_class=40", "data.test_per_class=10",
    ]  # fmt: skip


def logged_step(run_dir: Path) -> int:
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    try:
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (json.JSONDecodeError, KeyError):  # a line being written
        return 0


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def straight_run(args: argparse.Namespace, run_dir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command(args, run_dir), cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def interrupted_run(
    args: argparse.Namespace, run_dir: Path, budget: int, rng: random.Random
) -> tuple[list[str], float]:
    """Train to the end, killing it at random steps up to ``budget`` times; the kinds of kill, wall time."""
    kills: list[str] = []
    start = time.perf_counter()
    while True:
        proc = subprocess.Popen(
            command(args, run_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        now = logged_step(run_dir)
        target = (
            rng.randint(now + 1, args.steps - 1) if len(kills) < budget and now + 1 < args.steps else None
        )
        while target is not None and proc.poll() is None and logged_step(run_dir) < target:
            time.sleep(0.01)
        if target is None or proc.poll() is not None:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"run in {run_dir} failed ({proc.returncode}): {err.decode()[-2000:]}")
            return kills, time.perf_counter() - start
        kind = rng.choice(["SIGKILL", "SIGTERM"])
        proc.send_signal(signal.SIGKILL if kind == "SIGKILL" else signal.SIGTERM)
        _, err = proc.communicate()
        expected = -signal.SIGKILL if kind == "SIGKILL" else 128 + signal.SIGTERM
        if proc.returncode not in (expected, 0):  # 0: the signal landed after the last step
            raise RuntimeError(f"{kind} gave exit status {proc.returncode}: {err.decode()[-2000:]}")
        kills.append(kind)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ckpt-every", type=int, default=10)
    p.add_argument("--kills-per-run", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "runs" / "bench_faults"))
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rng = random.Random(args.seed)

    reference_seconds = straight_run(args, out / "straight")
    reference = final_state(out / "straight")
    runs, kills, divergent, lost = 0, [], 0, 0.0
    while len(kills) < args.cycles:
        run_dir = out / f"killed{runs}"
        budget = min(args.kills_per_run, args.cycles - len(kills))
        run_kills, seconds = interrupted_run(args, run_dir, budget, rng)
        state = final_state(run_dir)
        same = state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
        divergent += not same
        lost += seconds - reference_seconds
        kills += run_kills
        runs += 1
        print(f"run {runs}: {len(run_kills)} kills ({', '.join(run_kills)}), {seconds:.1f} s, "
              f"{'identical' if same else 'DIFFERS'}", flush=True)  # fmt: skip
    print()
    print(f"quickstart, {args.steps} steps x batch {args.batch_size}, checkpoint every {args.ckpt_every}")
    print("| cycles | SIGKILL | SIGTERM | runs | divergences | uninterrupted (s) | time lost per cycle (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(kills)} | {kills.count('SIGKILL')} | {kills.count('SIGTERM')} | {runs} | {divergent} | "
        f"{reference_seconds:.1f} | {lost / max(len(kills), 1):.1f} |"
    )


if __name__ == "__main__":
    main()
