"""Two-view augmentation throughput: per-sample ``transforms.v2`` vs batched :class:`BatchViews`.

Prints samples/s (one sample = both views) for a recipe at a few image sizes:

- per-sample v2, one process (what ``num_workers=0`` training does), default threads and 1 thread;
- per-sample v2 in 2 DataLoader workers (batches of 32, collation included);
- ``BatchViews`` on CPU (batches of ``--batch-size``), default threads and 1 thread;
- ``BatchViews`` on CUDA when available (timed with synchronisation).

Inputs are random uint8 images already at the output size, as the batch pipelines store them.
Run: ``python benchmarks/augmentation.py [--recipe simclr] [--sizes 32 96]`` (well under a minute).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from mmssl.data import MultiViewItems
from mmssl.modalities.image.batch_views import build_batch_views
from mmssl.modalities.image.views import build_views


def best_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Best-of-``repeats`` seconds of one call (the machine may be shared: the best is the least noisy)."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def per_sample_one_process(images: torch.Tensor, recipe: str, n: int) -> float:
    two_views = build_views(recipe, images.shape[-1])
    for i in range(4):  # warm-up
        two_views(images[i])
    return n / best_time(lambda: [two_views(images[i % len(images)]) for i in range(n)], repeats=1)


def per_sample_workers(
    images: torch.Tensor, recipe: str, batch_size: int, batches: int, workers: int
) -> float:
    base = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    dataset = MultiViewItems(base, build_views(recipe, images.shape[-1]))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True, drop_last=True)
    it = iter(loader)
    next(it)  # workers started and warm
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def batched(images: torch.Tensor, recipe: str, device: str, repeats: int) -> float:
    transform = build_batch_views(recipe, images.shape[-1])
    images = images.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    transform({"images": images[:8]})  # warm-up (kernels, allocator) on a small batch
    return len(images) / best_time(lambda: transform({"images": images}), repeats=repeats, sync=sync)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="simclr", choices=["simclr", "moco_v2", "byol"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    for size in args.sizes:
        images = torch.randint(0, 256, (args.batch_size, 3, size, size), dtype=torch.uint8)
        n_single = 64 if size <= 32 else 16
        add(
            f"per-sample v2, 1 process ({threads} thr)", per_sample_one_process(images, args.recipe, n_single)
        )
        add(f"BatchViews cpu ({threads} thr)", batched(images, args.recipe, "cpu", 1))
        torch.set_num_threads(1)  # on a shared machine, intra-op threads can cost more than they give
        add("per-sample v2, 1 process (1 thr)", per_sample_one_process(images, args.recipe, n_single))
        add("BatchViews cpu (1 thr)", batched(images, args.recipe, "cpu", 1))
        torch.set_num_threads(threads)
        # DataLoader workers run with one intra-op thread each (torch sets it).
        add(
            "per-sample v2, 2 workers (1 thr)",
            per_sample_workers(images, args.recipe, 32, batches=4, workers=2),
        )
        if torch.cuda.is_available():
            add("BatchViews cuda", batched(images, args.recipe, "cuda", 10))
            big = torch.randint(0, 256, (4096, 3, size, size), dtype=torch.uint8)
            add("BatchViews cuda (batch 4096)", batched(big, args.recipe, "cuda", 10))

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"recipe={args.recipe}, batch={args.batch_size}, {os.cpu_count()} CPUs{load}")
    print("samples/s (one sample = both views)")
    header = f"{'method':<36}" + "".join(f"{f'{s} px':>10}" for s in args.sizes)
    print(header)
    print("-" * len(header))
    for name, values in rows.items():
        print(f"{name:<36}" + "".join(f"{v:>10.0f}" for v in values))


if __name__ == "__main__":
    main()
