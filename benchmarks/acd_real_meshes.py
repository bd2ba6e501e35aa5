"""How long CoACD takes on real shapes, to choose the ``acd:`` defaults (``timeout_s``) by measurement.

The built-in procedural shapes are made of primitives and decompose in milliseconds; real shapes do
not. This script decomposes, one at a time, with the builders' default ``acd:`` settings:

- every real mesh under ``--mesh-root`` (``.obj``, ``.off``, ``.ply``, ``.stl``; default
  ``../shared/data/3d``, which holds the Stanford bunny, Spot and the odedstein meshes), with
  :data:`~mmssl.modalities.pointcloud.acd.options.MESH_ACD_DEFAULTS` (what ``mesh_folder`` uses);
- ``--shapenet-per-category`` real ShapeNetPart training shapes per category from ``--shapenet-roots``
  (default ``../shared/data/3d/shapenetpart_points``, ~240 points a shape, and
  ``shapenetcore_partanno_segmentation_benchmark_v0_normal``, the full ~2,600 points), each surface
  reconstructed first, with :data:`~...POINT_CLOUD_ACD_DEFAULTS` (what ``shapenetpart`` uses).

Each shape runs in its own single worker process (one OpenMP thread, as in training) with a generous
``--cap`` instead of the default timeout, so the seconds column is CoACD's real time (plus about a
second of worker start-up); a shape still past the cap is reported as ``> cap``. The summary gives
the largest time per source and what the current default ``timeout_s`` would do to each shape.

Usage (from the repository root; about 10-20 minutes on 2 cores)::

    .venv/bin/python benchmarks/acd_real_meshes.py
    .venv/bin/python benchmarks/acd_real_meshes.py --shapenet-per-category 1 --cap 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mmssl.modalities.pointcloud.acd.batch import decompose_many  # noqa: E402
from mmssl.modalities.pointcloud.acd.job import ACDJob  # noqa: E402
from mmssl.modalities.pointcloud.acd.options import (  # noqa: E402
    MESH_ACD_DEFAULTS,
    POINT_CLOUD_ACD_DEFAULTS,
    ACDOptions,
)
from mmssl.modalities.pointcloud.io import read_mesh  # noqa: E402
from mmssl.modalities.pointcloud.shapenetpart import ShapeNetPart  # noqa: E402

MESH_EXTENSIONS = (".obj", ".off", ".ply", ".stl")


def mesh_jobs(root: Path) -> list[ACDJob]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_EXTENSIONS)
    jobs = []
    for path in files:
        vertices, faces = read_mesh(path)
        jobs.append(ACDJob(str(path.relative_to(root)), vertices.numpy(), faces.numpy()))
    return jobs


def shapenet_jobs(root: Path, per_category: int) -> list[ACDJob]:
    data = ShapeNetPart(root, "trainval", num_points=2048)
    taken: dict[int, int] = {}
    jobs = []
    for i, (path, category) in enumerate(data.samples):
        if taken.get(category, 0) >= per_category:
            continue
        taken[category] = taken.get(category, 0) + 1
        xyz, normals, _ = data.load_full(i)
        jobs.append(ACDJob(f"{path.parent.name}/{path.name}", xyz, None, normals))
    return jobs


def measure(job: ACDJob, options: ACDOptions, cap: float) -> dict:
    start = time.perf_counter()
    result, stats = decompose_many(
        [job],
        options.params(),
        cache_dir=None,
        workers=1,
        timeout_s=cap,
        fallback=options.fallback,
        progress=False,
    )
    return {
        "seconds": time.perf_counter() - start,
        "fallback": bool(stats.fallbacks),
        "components": len(result[0]),
        "method": result[0].method,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mesh-root", type=Path, default=Path("../shared/data/3d"))
    p.add_argument(
        "--shapenet-roots",
        type=Path,
        nargs="*",
        default=[
            Path("../shared/data/3d/shapenetpart_points"),  # ~240 points a shape
            Path("../shared/data/3d/shapenetcore_partanno_segmentation_benchmark_v0_normal"),  # ~2,600
        ],
    )
    p.add_argument("--shapenet-per-category", type=int, default=2)
    p.add_argument("--cap", type=float, default=600.0, help="per-shape limit for this measurement (s)")
    args = p.parse_args(argv)

    sources: list[tuple[str, ACDOptions, list[ACDJob]]] = []
    if args.mesh_root.is_dir():
        sources.append(("mesh", MESH_ACD_DEFAULTS, mesh_jobs(args.mesh_root)))
    else:
        print(f"no mesh root at {args.mesh_root}: mesh rows skipped")
    for root in args.shapenet_roots if args.shapenet_per_category > 0 else []:
        if root.is_dir():
            jobs = shapenet_jobs(root, args.shapenet_per_category)
            sources.append((f"shapenetpart ({root.name})", POINT_CLOUD_ACD_DEFAULTS, jobs))
        else:
            print(f"no ShapeNetPart root at {root}: its rows skipped")

    timeout = MESH_ACD_DEFAULTS.timeout_s
    print(f"| source | shape | vertices | faces | seconds | components | default timeout ({timeout:g} s) |")
    print("|---|---|---:|---:|---:|---:|---|")
    worst: dict[str, float] = {}
    for source, options, jobs in sources:
        for job in jobs:
            r = measure(job, options, args.cap)
            seconds = f"> {args.cap:g}" if r["fallback"] else f"{r['seconds']:.1f}"
            verdict = "fallback" if r["fallback"] or r["seconds"] > options.timeout_s else "ok"
            faces = "-" if job.faces is None else str(len(job.faces))
            row = (source, job.name, len(job.vertices), faces, seconds, r["components"], verdict)
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
            worst[source] = max(worst.get(source, 0.0), r["seconds"])
    for source, seconds in worst.items():
        print(f"largest time, {source}: {seconds:.1f} s")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cap {args.cap:g} s; load averages (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
