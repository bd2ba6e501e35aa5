"""Write WebDataset tar shards from a folder of images, videos, audio clips, point clouds, meshes or text.

Each sample becomes one record: the source file's bytes unchanged under its extension (``000123.jpg``,
``000123.mp4``, ``000123.wav``, ``000123.ply``, ``000123.obj``, ``000123.txt``), ``000123.json`` with its
path relative to SOURCE (and class), and ``000123.cls`` (the class index) with ``--labelled`` (SOURCE holds
one sub-folder per class). Meshes and point clouds with ``--acd-cache DIR`` also carry ``000123.acd.npz``,
the cached approximate convex decomposition of that shape (default ACD options for meshes, resp. point
clouds: what a ``mesh_folder`` / ``point_folder`` run on SOURCE cached) when the cache has one. Text: every
``.txt`` file is a record; every line of a ``.jsonl`` file is one (its ``--text-field``). Images with
``--pixels``: the decoded image, uint8 ``[3, H, W]`` as ``000123.npy``, instead of the encoded file, so
reading skips the decode (for small images: 3 H W bytes each; see :mod:`mmssl.modalities.image.shards`).
``--no-meta`` leaves the ``.json`` member out (image, video, audio, points, mesh: it only records where the
sample came from): one tar member fewer a record. Python's tar reader spends ~30 µs on each member's
header, as much as a small image's pixels cost to read, so for CIFAR-size images this nearly doubles the
records read per second (``benchmarks/shards.py``); the class stays in ``.cls``.

Every file is decoded once with the toolkit's own reader before it is written (a shard set holds no
undecodable record); a bad file stops the run naming it, or with ``--skip-bad`` is left out and listed.
Samples are written in a seeded random order (``--seed``; ``--no-shuffle`` keeps sorted order) so that a
shard mixes classes, shards are cut at ``--max-samples`` records or ``--max-mb`` MiB, every shard is read
back and compared with what was written, and ``OUT/shards.json`` lists them (see
:mod:`mmssl.data.shards`). Nothing is written outside OUT.

    .venv/bin/python data_tools/make_shards.py image ../shared/data/images/cifar10/train /tmp/cifar_shards \\
        --labelled --max-samples 5000
    .venv/bin/python data_tools/make_shards.py image ../shared/data/images/cifar10/train /tmp/cifar_pixels \\
        --pixels --no-meta --max-samples 5000
    .venv/bin/python data_tools/make_shards.py video ../shared/data/video/short_clips /tmp/clip_shards
    .venv/bin/python data_tools/make_shards.py audio ../shared/data/audio/fsdd_full /tmp/fsdd_shards
    .venv/bin/python data_tools/make_shards.py mesh MESHES /tmp/mesh_shards --acd-cache ~/.cache/mmssl/acd
    .venv/bin/python data_tools/make_shards.py points SCANS /tmp/point_shards --acd-cache ~/.cache/mmssl/acd
    .venv/bin/python data_tools/make_shards.py text ../shared/data/text/tinyshakespeare /tmp/text_shards

The image shards are what the ``image_files`` dataset streams with ``data.shards: OUT``, the video shards
what ``video_folder`` streams, the audio shards ``fsdd`` and ``audio_folder_csv`` (``data.root`` then gives
the evaluation clips), the mesh shards ``mesh_folder`` and the point-cloud shards ``point_folder`` (ACD
labels from ``--acd-cache``) and the text shards ``text_corpus``, each with ``data.shards: OUT``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mmssl.data.shards import ShardManifest, ShardSetWriter  # noqa: E402
from mmssl.errors import CorruptFileError, DataError  # noqa: E402

MODALITIES = ("image", "video", "audio", "points", "mesh", "text")


@dataclass
class SourceItem:
    """One sample to write: the file it comes from, its member name, its bytes, and its class (or None)."""

    path: Path
    member: str
    data: bytes
    label: str | None
    extra: dict[str, bytes]
    meta: dict[str, object]


# modality -> (module, its extensions constant, its reader: used only to prove a file decodes)
READERS: dict[str, tuple[str, str, str]] = {
    "image": ("mmssl.modalities.image.folder", "IMG_EXTENSIONS", "load_image"),
    "video": ("mmssl.modalities.video.io", "VIDEO_EXTENSIONS", "video_info"),
    "audio": ("mmssl.modalities.audio.io", "AUDIO_EXTENSIONS", "read_audio"),
    "points": ("mmssl.modalities.pointcloud.io", "POINT_EXTENSIONS", "read_points"),
    "mesh": ("mmssl.modalities.pointcloud.io", "MESH_EXTENSIONS", "read_mesh"),
}


def extensions(modality: str) -> tuple[str, ...]:
    if modality == "text":
        return (".txt", ".jsonl")
    module, constant, _ = READERS[modality]
    return getattr(importlib.import_module(module), constant)


def checker(modality: str) -> Callable[[Path], object]:
    """The toolkit's reader for ``modality``, used only to prove a file decodes (raises CorruptFileError)."""
    if modality != "text":
        module, _, reader = READERS[modality]
        return getattr(importlib.import_module(module), reader)

    def check_text(path: Path) -> None:
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise CorruptFileError(path, f"not UTF-8 text ({err})") from err

    return check_text


def list_files(source: Path, modality: str, labelled: bool) -> tuple[list[Path], list[str]]:
    """The files of ``modality`` under ``source`` (sorted), and the class names (sorted sub-folders)."""
    if not source.is_dir():
        raise DataError(f"source folder not found: {source}")
    exts = tuple(e.lower() for e in extensions(modality))
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    classes: list[str] = []
    if labelled:
        classes = sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DataError(f"--labelled needs one sub-folder per class in {source}")
        files = [p for p in files if len(p.relative_to(source).parts) > 1]
    if not files:
        raise DataError(f"no {modality} files ({', '.join(exts)}) under {source}")
    return files, classes


def acd_member(path: Path, modality: str, cache_dir: Path) -> bytes | None:
    """The cached decomposition of mesh or point cloud ``path`` (the default ACD options of its kind, the
    job built as ``mesh_folder`` / ``point_folder`` build it, so the key is theirs), or None when it was
    not computed."""
    from mmssl.modalities.pointcloud.acd.cache import ACDCache, cache_key
    from mmssl.modalities.pointcloud.acd.job import ACDJob
    from mmssl.modalities.pointcloud.acd.options import MESH_ACD_DEFAULTS, POINT_CLOUD_ACD_DEFAULTS
    from mmssl.modalities.pointcloud.io import read_mesh, read_point_file

    if modality == "mesh":
        vertices, faces = read_mesh(path)
        job, params = ACDJob(path.stem, vertices.numpy(), faces.numpy()), MESH_ACD_DEFAULTS.params()
    else:
        xyz, normals = read_point_file(path)
        job, params = ACDJob(path.stem, xyz, None, normals), POINT_CLOUD_ACD_DEFAULTS.params()
    cached = ACDCache(cache_dir).path(cache_key(job, params))
    return cached.read_bytes() if cached is not None and cached.is_file() else None


def items(args: argparse.Namespace, files: list[Path], classes: list[str]) -> Iterator[SourceItem | Path]:
    """What to write, file by file (a Path is a bad file left out with ``--skip-bad``)."""
    source = Path(args.source)
    check = checker(args.modality)
    for path in files:
        rel = path.relative_to(source)
        label = rel.parts[0] if classes else None
        try:
            decoded = check(path)
        except (CorruptFileError, DataError) as err:
            if not args.skip_bad:
                raise
            print(f"skipped: {err}", file=sys.stderr)
            yield path
            continue
        extra: dict[str, bytes] = {}
        if args.modality in ("mesh", "points") and args.acd_cache:
            found = acd_member(path, args.modality, Path(args.acd_cache).expanduser())
            if found is not None:
                extra["acd.npz"] = found
        meta: dict[str, object] = {"path": rel.as_posix()}
        if path.suffix.lower() == ".jsonl":
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)[args.text_field]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise DataError(f"{path}:{n + 1}: no string field {args.text_field!r} ({err})") from err
                yield SourceItem(path, "txt", str(text).encode(), label, {}, {**meta, "line": n + 1})
            continue
        if args.pixels:  # the image the check decoded, stored as it is read back
            from mmssl.modalities.image.shards import PIXELS_FIELD, encode_pixels

            yield SourceItem(path, PIXELS_FIELD, encode_pixels(decoded), label, extra, meta)
            continue
        member = path.suffix.lower().lstrip(".")
        yield SourceItem(path, member, path.read_bytes(), label, extra, meta)


def make_shards(args: argparse.Namespace) -> ShardManifest:
    source = Path(args.source)
    files, classes = list_files(source, args.modality, args.labelled)
    if not args.no_shuffle:
        random.Random(args.seed).shuffle(files)
    writer = ShardSetWriter(
        args.out,
        modality=args.modality,
        classes=classes,
        source=str(source),
        max_samples=args.max_samples,
        max_bytes=int(args.max_mb * 2**20),
        overwrite=args.overwrite,
    )
    skipped: list[Path] = []
    written = 0
    with writer:
        for item in tqdm(items(args, files, classes), total=len(files), desc="shards", unit="file"):
            if isinstance(item, Path):
                skipped.append(item)
                continue
            meta = dict(item.meta)
            record = {"__key__": f"{written:09d}", item.member: item.data, **item.extra}
            if item.label is not None:
                meta["class"] = item.label
                record["cls"] = str(classes.index(item.label)).encode()
            if not args.no_meta:
                record["json"] = json.dumps(meta).encode()
            writer.write(record)
            written += 1
    manifest = writer.manifest
    assert manifest is not None  # close() ran on leaving the with block
    total = sum(s.bytes for s in manifest.shards)
    print(
        f"wrote {manifest.num_samples} samples in {len(manifest.shards)} shards ({total / 2**20:.1f} MiB) "
        f"to {args.out}; verified by reading back; skipped {len(skipped)} bad file(s)"
    )
    for path in skipped:
        print(f"  skipped: {path}")
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("modality", choices=MODALITIES)
    p.add_argument("source", help="folder to read (any depth)")
    p.add_argument("out", help="folder to write shard-*.tar and shards.json into")
    p.add_argument("--labelled", action="store_true", help="SOURCE has one sub-folder per class")
    p.add_argument("--max-samples", type=int, default=10_000, help="records per shard at most")
    p.add_argument("--max-mb", type=float, default=256.0, help="payload MiB per shard at most")
    p.add_argument("--seed", type=int, default=0, help="seed of the write order")
    p.add_argument("--no-shuffle", action="store_true", help="write in sorted path order")
    p.add_argument("--skip-bad", action="store_true", help="leave undecodable files out (listed)")
    p.add_argument("--overwrite", action="store_true", help="replace a shard set already in OUT")
    p.add_argument("--acd-cache", help="mesh, points: ACD cache folder whose decompositions to include")
    p.add_argument("--text-field", default="text", help="text: the JSONL field holding the text")
    p.add_argument(
        "--pixels", action="store_true", help="image: store the decoded uint8 image (.npy), not the file"
    )
    p.add_argument(
        "--no-meta",
        action="store_true",
        help="no .json member (source path, class name): one member fewer a record, faster to read",
    )
    args = p.parse_args(argv)
    if args.pixels and args.modality != "image":
        p.error(f"--pixels applies to images, not {args.modality}")
    if args.no_meta and args.modality == "text":
        p.error("--no-meta: a text record's .json marks a JSONL line (read as one unit), so it stays")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        make_shards(parse_args(argv))
    except (DataError, CorruptFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
