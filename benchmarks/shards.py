"""Reading CIFAR-10 as a folder of 50,000 JPEGs vs as WebDataset shards; and a video folder vs its shards.

Images (``../shared/data/images/cifar10/train``, written once to shards with ``data_tools/make_shards.py``
into ``--shards-dir``, 5,000 images a shard, reused when present), images/s, for three kinds of shard: the
JPEG files as they are ("shards"), the decoded images (``make_shards.py --pixels``, uint8 ``.npy``:
"pixel shards"), and the decoded images without the ``.json`` member that records each one's source path
(``--pixels --no-meta``: one tar member a record instead of two):

- ``raw bytes``: every file opened and read in a seeded random order (what a shuffling map-style loader
  does) vs every shard read through in turn (``iter_records``), no decoding;
- ``pretraining loader``: the trainer's own DataLoader (``trainer.pretraining_loader``) over the
  ``image_files`` dataset with ``data.images: FOLDER`` vs ``data.shards: DIR`` (JPEG decode to uint8
  32x32, per-sample seeding; the batched two-view augmentation runs later on the training device and is
  not timed), batches of 256, with 0, 1 and 2 data-loader workers.

Videos (``--video-dir``, default: the built-in procedural videos, generated into the cache on first use),
clips/s: raw bytes as above, and every frame of each video decoded with decord from the file vs from
the shard member's bytes.

Every rate is the best of ``--repeats`` passes over ``--images`` images (default all 50,000). By
default the page cache is warm after the first pass: the figures then compare per-file overhead (open,
stat, small reads) with sequential reads. ``--cold`` drops the page cache before every pass (root only),
as for a data set larger than memory, read from this machine's disk. A network file system or object
store, with ms per file, favours shards far more than either. ``--quick`` tests the script (2,000
images, one pass). ``--handoff`` prints only a second table: the loader with workers handing over each
batch vs handing over its size alone, i.e. what a batch's passage to the main process costs.

    .venv/bin/python benchmarks/shards.py   # ~5 min on 2 cores, + ~1 min a shard set written once
    .venv/bin/python benchmarks/shards.py --quick
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_tools.make_shards import main as make_shards  # noqa: E402
from mmssl.data.shards import ShardManifest, ShardStream, iter_records, read_manifest  # noqa: E402
from mmssl.errors import DataError  # noqa: E402
from mmssl.modalities.image.datasets import image_files  # noqa: E402
from mmssl.modalities.image.shards import PIXELS_FIELD  # noqa: E402
from mmssl.modalities.image.unlabelled import list_images  # noqa: E402
from mmssl.train.config import TrainConfig  # noqa: E402
from mmssl.train.data import ResumableSampler  # noqa: E402
from mmssl.train.trainer import pretraining_loader  # noqa: E402

CIFAR = REPO / ".." / "shared" / "data" / "images" / "cifar10" / "train"


COLD = False  # --cold: drop the page cache before every timed pass


def drop_page_cache() -> None:
    """Empty the kernel's page cache (needs root), so the next pass reads from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as err:
        raise SystemExit(f"--cold needs to write /proc/sys/vm/drop_caches (root): {err}") from err


def best_rate(run: Callable[[], int], repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` calls of ``run`` (which returns the items it read)."""
    best = 0.0
    for _ in range(repeats):
        if COLD:
            drop_page_cache()
        start = time.perf_counter()
        items = run()
        best = max(best, items / (time.perf_counter() - start))
    return best


def written_by_this_writer(manifest: ShardManifest) -> bool:
    """False for a set an older writer made: its first member comes after a PAX extended header (tar type
    flag ``x`` at byte 156), which the current writer no longer puts before every member."""
    with open(manifest.path(manifest.shards[0]), "rb") as f:
        return f.read(512)[156:157] not in (b"x", b"g")


# the image shard sets the tables compare: name -> (folder under --shards-dir, make_shards.py options)
IMAGE_SHARDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "shards": ("cifar10", ()),
    "pixel shards": ("cifar10_pixels", ("--pixels",)),
    "pixel shards, no .json": ("cifar10_pixels_nometa", ("--pixels", "--no-meta")),
}


def ensure_shards(
    source: Path, out: Path, modality: str, max_samples: int, options: tuple[str, ...] = ()
) -> Path:
    """The shard set of ``source`` at ``out``, written with ``make_shards.py`` ``options`` unless one of the
    same source, kind (JPEG or pixel members, with or without ``.json``) and writer is there already."""
    try:
        manifest = read_manifest(out, modality=modality)
        if (
            Path(manifest.source).resolve() == source.resolve()
            and (PIXELS_FIELD in manifest.fields) == ("--pixels" in options)
            and ("json" in manifest.fields) == ("--no-meta" not in options)
            and written_by_this_writer(manifest)
        ):
            return out
    except DataError:
        pass
    print(f"writing {modality} shards of {source} to {out} ...", flush=True)
    args = [modality, str(source), str(out), "--max-samples", str(max_samples), "--overwrite", *options]
    if make_shards(args) != 0:
        raise SystemExit(f"make_shards failed for {source}")
    return out


def read_files(paths: list[Path]) -> Callable[[], int]:
    order = paths[:]
    random.Random(0).shuffle(order)

    def run() -> int:
        for path in order:
            with open(path, "rb") as f:
                f.read()
        return len(order)

    return run


def read_shards(shards: Path, limit: int) -> Callable[[], int]:
    manifest = read_manifest(shards)

    def run() -> int:
        n = 0
        for info in manifest.shards:
            for _ in iter_records(manifest.path(info), expected=info.samples):
                n += 1
                if n == limit:
                    return n
        return n

    return run


def pretraining_sets(shard_sets: dict[str, Path]) -> dict[str, Any]:
    """The ``image_files`` pretraining datasets the loader rows read: the folder, then every shard set."""
    sets = {"folder": image_files(images=str(CIFAR), image_size=32).pretrain}
    for name, where in shard_sets.items():
        sets[name] = image_files(shards=str(where), image_size=32, shuffle_buffer=1000).pretrain
    return sets


def count_only(samples: list) -> int:
    """A collate function that hands the main process the batch size alone (``--handoff``)."""
    return len(samples)


def loader_rate(
    bundle_pretrain, workers: int, images: int, repeats: int, collate_fn: Callable | None = None
) -> float:
    cfg = TrainConfig(batch_size=256, num_workers=workers, seed=0)
    device = torch.device("cpu")
    sampler = None
    if isinstance(bundle_pretrain, ShardStream):
        bundle_pretrain.configure(rank=0, world_size=1, batch_size=cfg.batch_size)
    else:
        sampler = ResumableSampler(len(bundle_pretrain), cfg.batch_size, seed=0)
    batches = iter(pretraining_loader(bundle_pretrain, cfg, sampler, collate_fn, device))
    next(batches)  # worker start-up, as in training (persistent workers)
    steps = max(images // cfg.batch_size, 4)

    def run() -> int:
        for _ in range(steps):
            next(batches)
        return steps * cfg.batch_size

    return best_rate(run, repeats)


def video_rows(args) -> list[tuple[str, str, float, float]]:
    import decord

    if args.video_dir:
        folder = Path(args.video_dir)
    else:
        from mmssl.modalities.video.procedural import ProceduralVideoSpec, build_procedural_videos

        folder = build_procedural_videos(ProceduralVideoSpec())
    shards = ensure_shards(folder, Path(args.shards_dir) / "video", "video", 64)
    from mmssl.modalities.video.io import VIDEO_EXTENSIONS

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    manifest = read_manifest(shards)

    def decode_files() -> int:
        for path in paths:
            vr = decord.VideoReader(str(path), num_threads=1)
            vr.get_batch(list(range(len(vr)))).asnumpy()
        return len(paths)

    def decode_shards() -> int:
        n = 0
        for info in manifest.shards:
            for record in iter_records(manifest.path(info), expected=info.samples):
                member = next(k for k in record if "." + k in VIDEO_EXTENSIONS)
                vr = decord.VideoReader(io.BytesIO(record[member]), num_threads=1)
                vr.get_batch(list(range(len(vr)))).asnumpy()
                n += 1
        return n

    return [
        (
            f"video: raw bytes ({len(paths)} files)",
            "clips/s",
            best_rate(read_files(paths), args.repeats),
            best_rate(read_shards(shards, len(paths)), args.repeats),
        ),
        (
            "video: decode every frame (decord, 1 thread)",
            "clips/s",
            best_rate(decode_files, args.repeats),
            best_rate(decode_shards, args.repeats),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="images per pass (default: all)")
    parser.add_argument("--repeats", type=int, default=2, help="passes per cell; the best is reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shards-dir", default=str(REPO / "runs" / "bench_shards"))
    parser.add_argument("--video-dir", help="a folder of videos (default: the built-in procedural set)")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every pass (root)")
    parser.add_argument("--quick", action="store_true", help="2,000 images, one pass: tests the script")
    parser.add_argument(
        "--handoff",
        action="store_true",
        help="only the loader with workers, handing over each batch vs its size alone (what the batch's "
        "passage from a worker to the main process costs)",
    )
    args = parser.parse_args()
    global COLD
    COLD = args.cold
    if args.quick:
        args.images, args.repeats = 2000, 1
    torch.set_num_threads(1)
    if not CIFAR.is_dir():
        raise SystemExit(f"CIFAR-10 not found at {CIFAR} (see ../shared/data/README.md)")
    shard_sets = {
        name: ensure_shards(CIFAR, Path(args.shards_dir) / folder, "image", 5000, options)
        for name, (folder, options) in IMAGE_SHARDS.items()
    }
    if args.handoff:
        handoff_table(shard_sets, args)
        return
    paths = list_images(CIFAR)[: args.images]
    # (what, unit, folder rate, {shard set: rate}); a set missing from the dict has no cell in that row
    rows: list[tuple[str, str, float, dict[str, float]]] = [
        (
            "images: raw bytes",
            "images/s",
            best_rate(read_files(paths), args.repeats),
            {
                name: best_rate(read_shards(where, len(paths)), args.repeats)
                for name, where in shard_sets.items()
            },
        ),
    ]
    loaders = pretraining_sets(shard_sets)
    for workers in args.workers:
        rates = {
            name: loader_rate(data, workers, args.images, args.repeats) for name, data in loaders.items()
        }
        rows.append(
            (f"images: pretraining loader, {workers} workers", "images/s", rates.pop("folder"), rates)
        )
    if not args.no_video:
        rows += [
            (what, unit, folder, {"shards": sharded}) for what, unit, folder, sharded in video_rows(args)
        ]
    cache = "page cache dropped before every pass" if args.cold else "warm page cache"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"\n{len(paths)} CIFAR-10 images per pass, best of {args.repeats}; {cache}{load}\n")
    print(
        "| what | unit | folder | " + " | ".join(f"{name} | {name} / folder" for name in IMAGE_SHARDS) + " |"
    )
    print("|---|---|---:|" + "---:|---:|" * len(IMAGE_SHARDS))
    for what, unit, folder, rates in rows:
        cells = [
            f"{rates[name]:,.0f} | {rates[name] / folder:.2f}x" if name in rates else "– | –"
            for name in IMAGE_SHARDS
        ]
        print(f"| {what} | {unit} | {folder:,.0f} | " + " | ".join(cells) + " |")


def handoff_table(shard_sets: dict[str, Path], args) -> None:
    """The pretraining loader with workers, as in the main table, against the same loader whose workers
    hand over only the batch size (``count_only``): the difference is what moving a collated batch from a
    worker to the main process costs (shared memory, its file descriptor, unpickling)."""
    kinds = pretraining_sets(shard_sets)
    print(f"\n{args.images} CIFAR-10 images per pass, best of {args.repeats}, batches of 256\n")
    print("| kind | workers | batches handed over (images/s) | batch size only (images/s) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, data in kinds.items():
        for workers in (w for w in args.workers if w > 0):
            full = loader_rate(data, workers, args.images, args.repeats)
            bare = loader_rate(data, workers, args.images, args.repeats, collate_fn=count_only)
            print(f"| {name} | {workers} | {full:,.0f} | {bare:,.0f} | {full / bare:.2f} |", flush=True)


if __name__ == "__main__":
    main()
