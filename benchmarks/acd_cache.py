"""ACD throughput: meshes/s with the cache cold and warm, with 1 and 2 worker processes, per-piece vs
whole-mesh decomposition, and the CoACD settings the built-in data uses against CoACD's defaults.

The meshes are the built-in procedural shapes (the demo's five categories, taken round-robin so every
row sees the same mix). Each cold row uses a fresh temporary cache; the warm row re-reads the cache
the cold 2-worker row filled. Rows:

- ``cold, 1 worker`` / ``cold, 2 workers``: what the ``procedural_parts`` builder does with its default
  ``acd:`` section (``ACDParams()``: fast CoACD settings, each connected piece on its own, convex pieces
  without a CoACD call), worker start-up included (a first run pays it);
- ``warm, 2 workers``: every decomposition is a cache hit, no CoACD call;
- ``cold, 2 workers, whole meshes``: CoACD on every whole mesh, fast settings (a recipe's
  ``acd: {split_pieces: false}``);
- ``cold, 2 workers, whole, coacd defaults``: CoACD's defaults (resolution 2000, preprocess_resolution
  50, mcts_iterations 150, mcts_nodes 20) on whole meshes (``--skip-defaults`` leaves it out).

The ``components`` column (mean per mesh) shows what the cheaper rows give up, if anything. One
OpenMP thread per worker. On a shared machine the load averages printed at the end say how busy it
was. ``--quick``: 5 meshes (one per category) instead of 10.

Usage (from the repository root)::

    .venv/bin/python benchmarks/acd_cache.py --quick
    .venv/bin/python benchmarks/acd_cache.py --meshes 20 --timeout 120
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mmssl.modalities.pointcloud.acd.batch import decompose_many  # noqa: E402
from mmssl.modalities.pointcloud.acd.job import ACDJob  # noqa: E402
from mmssl.modalities.pointcloud.acd.params import ACDParams  # noqa: E402
from mmssl.modalities.pointcloud.procedural import DEFAULT_CATEGORIES, procedural_shape  # noqa: E402

WHOLE = ACDParams(split_pieces=False)
COACD_DEFAULTS = ACDParams(
    resolution=2000, preprocess_resolution=50, mcts_iterations=150, mcts_nodes=20, split_pieces=False
)


def meshes(n: int) -> list[ACDJob]:
    jobs = []
    for i in range(n):
        category = DEFAULT_CATEGORIES[i % len(DEFAULT_CATEGORIES)]
        m = procedural_shape(category, i // len(DEFAULT_CATEGORIES), "train", seed=12345)
        jobs.append(ACDJob(f"{category} #{i}", m.vertices, m.faces))
    return jobs


def run(jobs, params, cache: Path, workers: int, timeout: float) -> dict:
    start = time.perf_counter()
    result, stats = decompose_many(
        jobs, params, cache_dir=cache, workers=workers, timeout_s=timeout, progress=False
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rate": len(jobs) / seconds,
        "hits": stats.cached,
        "fallbacks": len(stats.fallbacks),
        "components": sum(len(d) for d in result) / len(result),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 meshes (one per category)")
    p.add_argument("--meshes", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120.0, help="per-mesh timeout (s)")
    p.add_argument("--skip-defaults", action="store_true", help="leave out the CoACD-defaults row")
    args = p.parse_args(argv)
    n = 5 if args.quick else args.meshes
    jobs = meshes(n)
    fast = ACDParams()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("cold, 1 worker", run(jobs, fast, Path(tmp) / "a", 1, args.timeout)))
        rows.append(("cold, 2 workers", run(jobs, fast, Path(tmp) / "b", 2, args.timeout)))
        rows.append(("warm, 2 workers", run(jobs, fast, Path(tmp) / "b", 2, args.timeout)))
        rows.append(("cold, 2 workers, whole meshes", run(jobs, WHOLE, Path(tmp) / "c", 2, args.timeout)))
        if not args.skip_defaults:
            defaults = run(jobs, COACD_DEFAULTS, Path(tmp) / "d", 2, args.timeout)
            rows.append(("cold, 2 workers, whole, coacd defaults", defaults))
    print(f"\nACD on {n} procedural meshes ({', '.join(DEFAULT_CATEGORIES)}), timeout {args.timeout:g}s")
    print(f"fast settings: {fast.coacd_kwargs()}")
    columns = ("seconds", 8), ("meshes/s", 9), ("cache hits", 10), ("fallbacks", 9), ("components", 10)
    header = f"{'setting':40s} " + " ".join(f"{name:>{width}s}" for name, width in columns)
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:40s} {r['seconds']:8.2f} {r['rate']:9.3f} {r['hits']:10d} {r['fallbacks']:9d} "
            f"{r['components']:10.2f}"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load averages (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
