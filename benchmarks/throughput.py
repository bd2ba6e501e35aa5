"""Training-loop throughput: mmssl's Trainer vs a lightly loop vs a bare PyTorch loop.

All three loops train the same thing — SimCLR (two views, 2-layer projection MLP, NT-Xent with
temperature 0.5, SGD) on a ResNet-18 with the CIFAR stem (3x3/1 conv, no max-pool) at 32x32 — on
the same pre-generated, already "augmented" two-view tensors served by a ``DataLoader`` with the
same batch size and ``num_workers=0``. Image decoding and augmentation are thus out of the picture
and the numbers isolate what each loop adds around the model's forward/backward:

* ``mmssl``:   ``mmssl.train.trainer.Trainer`` (SGD, no checkpoints, no progress bar, no run
  directory) driving ``METHODS["simclr"]`` on ``ENCODERS["resnet18"](small_stem=True)``.
* ``lightly``: ``lightly.models.modules.SimCLRProjectionHead`` + ``lightly.loss.NTXentLoss`` on a
  torchvision ResNet-18 trunk, in a plain loop as lightly's examples write it.
* ``bare``:    the same trunk + an ``nn.Sequential`` projection MLP + a hand-written NT-Xent.

bf16 autocast on CUDA (the loss itself in fp32, as mmssl does), fp32 on CPU. Each loop runs in its
own subprocess so that allocator caches and peak-memory counters do not leak between loops.
``images/s`` counts source images per second; each image is two augmented views, i.e. two
forward/backward passes through the trunk. Peak memory is ``torch.cuda.max_memory_allocated`` on
CUDA; on CPU it is the growth of the resident set (peak RSS during the loop minus RSS just before
it), read from ``/proc/self/status`` after resetting the high-water mark (``ru_maxrss`` elsewhere).
"images per CPU-s" divides by the process's CPU time (all threads) instead of wall-clock time: on a
machine shared with other jobs it is the steadier figure for comparing the loops.

Usage (from the repository root)::

    .venv/bin/python benchmarks/throughput.py                     # CPU: batch 64, 1 + 3 steps
    .venv/bin/python benchmarks/throughput.py --device cuda       # GPU: batch 256, 20 + 200 steps
    .venv/bin/python benchmarks/throughput.py --loop mmssl        # one loop, prints a JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # mmssl from this checkout, also where it is not pip-installed

LOOPS = ("mmssl", "lightly", "bare")
RESULT_TAG = "RESULT "
TEMPERATURE = 0.5
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 1e-4
PROJ_HIDDEN, PROJ_DIM = 512, 128
IMAGE_SIZE = 32
# (batch size, warm-up steps, timed steps) per device type.
DEFAULTS = {"cpu": (64, 1, 3), "cuda": (256, 20, 200)}


# ------------------------------------------------------------------------------------------ data


class TwoViewTensors(Dataset):
    """Pre-computed views: item ``i`` is ``{"views": [v1[i], v2[i]]}`` (mmssl's two-view contract)."""

    def __init__(self, view1: Tensor, view2: Tensor) -> None:
        self.view1, self.view2 = view1, view2

    def __len__(self) -> int:
        return self.view1.shape[0]

    def __getitem__(self, index: int) -> dict[str, list[Tensor]]:
        return {"views": [self.view1[index], self.view2[index]]}


def make_views(num_samples: int, seed: int) -> TwoViewTensors:
    """Smooth random images (8x8 noise upsampled to 32x32) and two cheap "augmentations" of each:
    a random crop-and-resize stand-in (shift) and a horizontal flip, plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(num_samples, 3, 8, 8, generator=g), size=IMAGE_SIZE, mode="bilinear")
    view1 = torch.roll(base, shifts=(2, -1), dims=(2, 3)) + 0.05 * torch.randn(base.shape, generator=g)
    view2 = torch.flip(base, dims=(3,)) + 0.05 * torch.randn(base.shape, generator=g)
    mean, std = 0.5, 0.25
    return TwoViewTensors(((view1 - mean) / std).contiguous(), ((view2 - mean) / std).contiguous())


def forever(loader: DataLoader) -> Iterator[Any]:
    """Cycle through epochs of ``loader`` endlessly."""
    while True:
        yield from loader


# ------------------------------------------------------------------------------------------ models


def resnet18_small_stem() -> nn.Module:
    """torchvision ResNet-18, random init, CIFAR stem, classifier removed: ``[B,3,32,32] -> [B,512]``.

    The same architecture as ``mmssl``'s ``resnet18(small_stem=True)``, built independently here so
    the lightly and bare loops do not depend on mmssl code.
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class TrunkAndHead(nn.Module):
    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def bare_nt_xent(z1: Tensor, z2: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """NT-Xent over the 2N views: row i's positive is i+N (mod 2N); self-similarity is masked out."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)


# ------------------------------------------------------------------------------------------ memory


def _proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class CpuPeakMemory:
    """Peak resident-set growth (bytes) between ``start()`` and ``peak_increase()``.

    On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the ``VmHWM`` high-water mark, so
    the peak is measured over the loop alone. Elsewhere ``ru_maxrss`` is used, which only sees the
    loop when the loop raises the process's all-time peak.
    """

    def start(self) -> None:
        self.reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = _proc_status_kb("VmHWM") is not None
        except OSError:
            pass
        rss = _proc_status_kb("VmRSS")
        if rss is None:
            import psutil  # only reached off Linux

            rss = psutil.Process().memory_info().rss // 1024
        self.start_kb = rss

    def peak_increase(self) -> int:
        if self.reset:
            peak_kb = _proc_status_kb("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak_kb = peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS
        return max(0, peak_kb - self.start_kb) * 1024


# ------------------------------------------------------------------------------------------ loops


class Stopwatch:
    """Wall-clock and process CPU time (all threads) between ``start()`` and ``stop()``.

    CPU time is the contention-robust figure on a shared machine: time a loop spends waiting for a
    core that another process holds is not counted.
    """

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": time.process_time() - self.cpu}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _loader(dataset: Dataset, batch_size: int, device: torch.device, seed: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )


def plain_loop(
    model: nn.Module,
    criterion: Callable[[Tensor, Tensor], Tensor],
    dataset: Dataset,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, float]:
    """The loop of lightly's examples: forward both views, loss, backward, step; no per-step sync."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    batches = forever(_loader(dataset, args.batch_size, device, args.seed))
    total_loss = torch.zeros((), device=device)
    watch = Stopwatch()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            watch.start()
        x0, x1 = (v.to(device, non_blocking=True) for v in next(batches)["views"])
        with _autocast(device):
            z0, z1 = model(x0), model(x1)
        loss = criterion(z0.float(), z1.float())  # the loss in fp32, as mmssl computes it
        total_loss += loss.detach()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return watch.stop() | {"final_loss": float(loss.detach())}


def run_bare(dataset: Dataset, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    head = nn.Sequential(
        nn.Linear(512, PROJ_HIDDEN, bias=False),
        nn.BatchNorm1d(PROJ_HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(PROJ_HIDDEN, PROJ_DIM),
    )
    return plain_loop(TrunkAndHead(resnet18_small_stem(), head), bare_nt_xent, dataset, args, device)


def run_lightly(dataset: Dataset, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    # lightly's SimCLR head: Linear-BN-ReLU-Linear-BN (one extra BatchNorm1d(128) vs the others).
    model = TrunkAndHead(resnet18_small_stem(), SimCLRProjectionHead(512, PROJ_HIDDEN, PROJ_DIM))
    return plain_loop(model, NTXentLoss(temperature=TEMPERATURE), dataset, args, device)


def run_mmssl(dataset: Dataset, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from mmssl.registry import ENCODERS, METHODS
    from mmssl.train.config import TrainConfig
    from mmssl.train.trainer import Trainer

    encoder = ENCODERS.build("resnet18", small_stem=True)
    method = METHODS.build(
        "simclr", encoder, temperature=TEMPERATURE, projector_hidden=PROJ_HIDDEN, projector_dim=PROJ_DIM
    )
    cfg = TrainConfig(
        steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        optimizer="sgd",
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        device=device.type,
        seed=args.seed,
        num_workers=0,
        ckpt_every=0,
        progress=False,
    )
    # Time exactly the steps after warm-up, from inside the trainer: its end-of-step hook runs
    # after optimizer.step(), so wrapping it marks the same points as the plain loops' timers.
    watch, timing = Stopwatch(), {}
    inner = method.on_train_step_end

    def timed_hook(step: int, total_steps: int) -> None:
        inner(step, total_steps)
        if step == args.warmup or step == total_steps:
            _sync(device)
            if step == args.warmup:
                watch.start()
            else:
                timing.update(watch.stop())

    method.on_train_step_end = timed_hook
    result = Trainer(cfg, method, dataset, run_dir=None).fit()
    return timing | {"final_loss": float(result.final_loss)}


RUNNERS = {"mmssl": run_mmssl, "lightly": run_lightly, "bare": run_bare}


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Run one loop in this process and return its measurements."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    dataset = make_views(args.num_samples, args.seed)
    torch.manual_seed(args.seed)
    mem = CpuPeakMemory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        mem.start()
    out = RUNNERS[args.loop](dataset, args, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else mem.peak_increase()
    return {
        "loop": args.loop,
        "images_per_s": args.steps * args.batch_size / out["seconds"],
        "peak_mb": peak / 2**20,
        "images_per_cpu_s": args.steps * args.batch_size / out["cpu_seconds"],
        "seconds": out["seconds"],
        "cpu_seconds": out["cpu_seconds"],
        "final_loss": out["final_loss"],
    }


# ------------------------------------------------------------------------------------------ driver


def _child_command(args: argparse.Namespace, loop: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--loop",
        loop,
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--num-samples",
        str(args.num_samples),
        "--seed",
        str(args.seed),
    ]


def default_loops() -> list[str]:
    """Every loop whose library is installed: lightly is optional (``pip install lightly``); naming it in
    ``--loops`` where it is missing fails loudly instead."""
    import importlib.util

    if importlib.util.find_spec("lightly") is None:
        print("lightly is not installed: its loop is left out (pip install lightly to compare it)")
        return [loop for loop in LOOPS if loop != "lightly"]
    return list(LOOPS)


def run_all(args: argparse.Namespace) -> int:
    """Run every loop in its own subprocess (``repeats`` rounds, interleaved) and print the table."""
    loops = args.loops or default_loops()
    cores = os.cpu_count() or 1
    print(f"device: {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, {cores} CPU cores, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(
        f"SimCLR, ResNet-18 (small stem), {IMAGE_SIZE}x{IMAGE_SIZE}, batch {args.batch_size}, "
        f"{args.warmup} warm-up + {args.steps} timed steps, {args.num_samples} pre-made two-view samples, "
        f"num_workers=0, {'bf16 autocast' if args.device == 'cuda' else 'fp32'}, "
        f"best of {args.repeats} run(s) per loop"
    )
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        busy = "  WARNING: machine busy, numbers are unreliable" if load > 0.5 * cores else ""
        print(f"load average before start: {load:.2f}{busy}")
    results: dict[str, list[dict[str, Any]]] = {loop: [] for loop in loops}
    failed = []
    for _ in range(args.repeats):
        for loop in loops:
            proc = subprocess.run(_child_command(args, loop), capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
            if proc.returncode != 0 or not lines:
                print(
                    f"loop '{loop}' failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", file=sys.stderr
                )
                failed.append(loop)
                continue
            results[loop].append(json.loads(lines[-1][len(RESULT_TAG) :]))
    if hasattr(os, "getloadavg"):
        print(f"load average at end: {os.getloadavg()[0]:.2f}")

    best = {
        loop: max(runs, key=lambda r: r["images_per_s"])
        | {
            "peak_mb": max(r["peak_mb"] for r in runs),
            "images_per_cpu_s": max(r["images_per_cpu_s"] for r in runs),
        }
        for loop, runs in results.items()
        if runs
    }
    bare = best.get("bare", {}).get("images_per_s")
    bare_cpu = best.get("bare", {}).get("images_per_cpu_s")
    mem_label = "peak memory (MB)" if args.device == "cuda" else "peak RSS increase (MB)"
    print()
    print(f"| loop | images/s | relative to bare | {mem_label} | images per CPU-s | relative to bare |")
    print("|---|---:|---:|---:|---:|---:|")
    for loop in loops:
        if loop not in best:
            print(f"| {loop} | failed | - | - | - | - |")
            continue
        r = best[loop]
        rel = f"{r['images_per_s'] / bare:.2f}x" if bare else "-"
        rel_cpu = f"{r['images_per_cpu_s'] / bare_cpu:.2f}x" if bare_cpu else "-"
        print(
            f"| {loop} | {r['images_per_s']:.1f} | {rel} | {r['peak_mb']:.0f} "
            f"| {r['images_per_cpu_s']:.1f} | {rel_cpu} |"
        )
    print()
    print("command: " + shlex.join(["python", *sys.argv]))
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 64 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 200 CUDA, 3 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default: 20 CUDA, 1 CPU)")
    p.add_argument("--num-samples", type=int, default=None, help="dataset size (default: 4 batches)")
    p.add_argument("--repeats", type=int, default=1, help="runs per loop; the fastest is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loops", nargs="+", choices=LOOPS, default=None, help="loops to compare (default: all)")
    p.add_argument("--loop", choices=LOOPS, default=None, help="run only this loop here; print a JSON line")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    batch, warmup, steps = DEFAULTS[args.device]
    args.batch_size = args.batch_size or batch
    args.warmup = warmup if args.warmup is None else args.warmup
    args.steps = args.steps or steps
    args.num_samples = args.num_samples or 4 * args.batch_size
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--warmup, --steps and --repeats must be >= 1 (the first step is never timed)")
    if args.num_samples < args.batch_size:
        p.error("--num-samples must be at least one batch")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loop is not None:
        print(RESULT_TAG + json.dumps(run_one(args)), flush=True)
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
