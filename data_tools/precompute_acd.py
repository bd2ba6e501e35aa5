"""Precompute approximate convex decompositions (ACD) for a whole dataset into the on-disk cache.

Runs the dataset builder itself with ACD on (``procedural_parts``, ``mesh_folder``, ``point_folder``
or ``shapenetpart``), so the cache keys are exactly the ones a recipe with the same data options will
look up: a later ``mmssl run`` finds every decomposition cached. CoACD runs in ``--workers``
processes with a per-shape ``--timeout`` (then the ``--fallback`` decomposition, logged); progress
is shown with tqdm. The options become the builder's ``acd:`` section (checked as a recipe's is); ACD
options left out keep the builder's defaults.

Usage (from the repository root)::

    .venv/bin/python data_tools/precompute_acd.py procedural --train-per-category 24 --workers 2
    .venv/bin/python data_tools/precompute_acd.py mesh_folder --root ../shared/data/3d/odedstein-meshes
    .venv/bin/python data_tools/precompute_acd.py point_folder --root /data/scans
    .venv/bin/python data_tools/precompute_acd.py shapenetpart --root /data/shapenetpart_normal \\
        --workers 2 --timeout 120 --categories Chair Table
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

# builder name per dataset kind
BUILDERS = {
    "procedural": "procedural_parts",
    "mesh_folder": "mesh_folder",
    "point_folder": "point_folder",
    "shapenetpart": "shapenetpart",
}
#: the datasets without meshes: their surfaces are reconstructed from the points first
POINT_CLOUD_DATASETS = ("point_folder", "shapenetpart")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("dataset", choices=sorted(BUILDERS), help="which builder's shapes to decompose")
    p.add_argument("--root", help="data folder (mesh_folder, point_folder, shapenetpart)")
    p.add_argument("--cache-dir", help="cache root, as the builders' cache_dir (ACD results go to <it>/acd); "
                   "default $MMSSL_CACHE/acd or ~/.cache/mmssl/acd")  # fmt: skip
    p.add_argument(
        "--categories", nargs="+", help="procedural / shapenetpart categories (default: the builder's)"
    )
    p.add_argument("--train-per-category", type=int, help="procedural: training shapes per category")
    p.add_argument("--seed", type=int, default=0, help="procedural: generator seed (a recipe's train.seed)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (0: in this process, no timeout)")
    p.add_argument(
        "--timeout", type=float, help="seconds per shape before the fallback (default: the builder's)"
    )
    p.add_argument("--fallback", choices=["connected_components", "single"], default="connected_components")
    p.add_argument("--threshold", type=float, help="CoACD concavity threshold")
    p.add_argument("--resolution", type=int, help="CoACD sampling resolution")
    p.add_argument("--preprocess-mode", choices=["auto", "on", "off"], help="CoACD manifold pre-processing")
    p.add_argument("--preprocess-resolution", type=int, help="CoACD pre-processing voxel resolution")
    p.add_argument("--mcts-iterations", type=int, help="CoACD MCTS iterations")
    p.add_argument("--mcts-nodes", type=int, help="CoACD MCTS nodes")
    p.add_argument(
        "--whole-meshes", action="store_true", help="CoACD on whole meshes (acd.split_pieces=false)"
    )
    p.add_argument(
        "--reconstruction", choices=["ball_pivoting", "poisson"], help="point clouds: surface method"
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files instead of stopping")
    return p.parse_args(argv)


def recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The builder's recipe options for these arguments, as a recipe's ``data:`` section would hold them
    (``seed`` aside); the ``acd:`` section lists only the ACD options given, the rest keep the builder's
    defaults."""
    acd: dict[str, Any] = {"enabled": True, "workers": args.workers, "fallback": args.fallback}
    optional = {
        "timeout_s": args.timeout,
        "threshold": args.threshold,
        "resolution": args.resolution,
        "preprocess_mode": args.preprocess_mode,
        "preprocess_resolution": args.preprocess_resolution,
        "mcts_iterations": args.mcts_iterations,
        "mcts_nodes": args.mcts_nodes,
    }
    acd.update({k: v for k, v in optional.items() if v is not None})
    options: dict[str, Any] = {
        "acd": acd,
        "cache_dir": args.cache_dir,
        "num_points": 64,  # points are not part of the cache key; keep sampling cheap
    }
    if args.whole_meshes:
        if args.dataset in POINT_CLOUD_DATASETS:
            raise SystemExit(f"precompute_acd: --whole-meshes does not apply to {args.dataset} (no meshes)")
        acd["split_pieces"] = False
    if args.dataset == "procedural":
        if args.root:
            raise SystemExit("precompute_acd: --root is not used with 'procedural'")
        if args.categories:
            options["categories"] = args.categories
        if args.train_per_category:
            options["train_per_category"] = args.train_per_category
        options["test_per_category"] = 1  # test shapes get no ACD; build as few as possible
    else:
        if not args.root:
            raise SystemExit(f"precompute_acd: --root is required for '{args.dataset}'")
        options["root"] = args.root
        options["skip_bad"] = args.skip_bad
        if args.dataset == "shapenetpart" and args.categories:
            options["categories"] = args.categories
        if args.dataset in POINT_CLOUD_DATASETS and args.reconstruction:
            acd["reconstruction"] = args.reconstruction
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mmssl.errors import DataError
    from mmssl.modalities.pointcloud import data
    from mmssl.modalities.pointcloud.acd_labels import acd_cache_dir
    from mmssl.options import builder_options

    name = BUILDERS[args.dataset]
    # the registered builder function, imported directly: no need to load every other modality
    builder = getattr(data, name)
    start = time.perf_counter()
    try:
        # checked and converted as a recipe's data section is: ``acd`` becomes the builder's ACD options
        options = builder_options(builder, recipe_options(args), "data", kind="dataset", name=name)
        bundle = builder(seed=args.seed, **options)
    except (DataError, ValueError) as err:
        print(f"precompute_acd: {err}", file=sys.stderr)
        return 1
    stats = bundle.stats
    print(
        f"{args.dataset}: {stats['acd_shapes']} shapes -> {acd_cache_dir(args.cache_dir)}\n"
        f"  cached before: {stats['acd_cached']}  computed: {stats['acd_computed']}  "
        f"fallbacks: {stats['acd_fallbacks']}\n"
        f"  mean components: {stats['acd_mean_components']:.2f}  "
        f"CoACD settings: {options['acd'].params().coacd_kwargs()}\n"
        f"  wall time: {time.perf_counter() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
