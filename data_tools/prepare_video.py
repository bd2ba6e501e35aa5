"""Check a video folder or a DAVIS root before training on it, and optionally extract frame folders.

python data_tools/prepare_video.py check ROOT [--full]
    A DAVIS-layout root (has JPEGImages/): sequences and frames per resolution, ImageSets lists,
    mask formats (DAVIS-2017 palette ids / DAVIS-2016 grayscale 0-255 / RGB), object counts,
    frames without a mask, masks whose size differs from their frame, unreadable images.
    Any other folder: videos per class (or unlabelled), frame counts, sizes, frame rates,
    unreadable files. ``--full`` decodes every frame / image instead of opening each file.
    Exit status 1 when anything is unreadable.

python data_tools/prepare_video.py extract SRC DST [--short-side 256] [--every 1]
    Writes every video under SRC as DST/<same relative path without suffix>/00000.jpg ...
    (class folders kept), so that ``video_folder`` reads frame folders instead of decoding.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

from PIL import Image

from mmssl.data import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.video.io import (
    davis_split_file,
    list_davis_sequences,
    list_frames,
    read_image,
    read_mask,
    read_video,
    video_info,
)
from mmssl.modalities.video.sources import find_video_sources, scan_sources
from mmssl.modalities.video.views import decode_size


def _mask_format(path: Path) -> str:
    with Image.open(path) as img:
        mode = img.mode
    return {"P": "palette ids (DAVIS-2017)", "L": "grayscale (DAVIS-2016 0/255)"}.get(mode, f"mode {mode}")


def check_davis(root: Path, full: bool) -> int:
    bad: list[str] = []
    for res_dir in sorted(p for p in (root / "JPEGImages").iterdir() if p.is_dir()):
        res = res_dir.name
        names = list_davis_sequences(root, res)
        splits = {s: davis_split_file(root, res, s) for s in ("train", "val", "test-dev")}
        print(
            f"[{res}] {len(names)} sequences; ImageSets: "
            + (
                ", ".join(f"{s}={p.relative_to(root)}" for s, p in splits.items() if p)
                or "none (all folders)"
            )
        )
        formats: Counter[str] = Counter()
        frames_total = masks_total = 0
        for name in names:
            frames = list_frames(res_dir / name)
            frames_total += len(frames)
            mask_dir = root / "Annotations" / res / name
            masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
            masks_total += len(masks)
            objects, missing = 0, [f.stem for f in frames if f.stem not in masks]
            for f in frames if full else frames[:1]:
                try:
                    size = read_image(f).shape[:2]
                except CorruptFileError as err:
                    bad.append(str(err))
                    continue
                if f.stem in masks:
                    try:
                        ids = read_mask(masks[f.stem])
                    except CorruptFileError as err:
                        bad.append(str(err))
                        continue
                    objects = max(objects, int(ids.max()))
                    if ids.shape != size:
                        bad.append(f"{masks[f.stem]}: mask {ids.shape} vs frame {size}")
            if masks:
                formats[_mask_format(next(iter(masks.values())))] += 1
            note = (
                f", {len(missing)} frames without mask"
                if masks and missing
                else ("" if masks else ", no masks")
            )
            print(f"  {name:<24} {len(frames):>5} frames, {objects} object(s){note}")
        print(f"  total {frames_total} frames, {masks_total} masks; mask formats: {dict(formats) or 'none'}")
    return _report_bad(bad)


def check_folder(root: Path, full: bool) -> int:
    items, classes = find_video_sources(root)
    if not items:
        raise DataError(f"no videos (files or frame folders) under {root}")
    skipping = SkipBadFiles(skip=True)
    sources = scan_sources(items, skipping)
    bad = [str(p) for p in skipping.bad_files]
    if full:
        for s in sources:
            if s.kind == "file":
                try:
                    for start in range(0, s.num_frames, 64):
                        read_video(s.path, range(start, min(start + 64, s.num_frames)), size=(32, 32))
                except CorruptFileError as err:
                    bad.append(str(err))
    per_class = Counter(s.label for s in sources)
    print(f"{len(items)} videos under {root} ({sum(s.kind == 'frames' for s in sources)} frame folders)")
    for label, name in enumerate(classes) if classes else [(-1, "(unlabelled)")]:
        print(f"  {name:<24} {per_class.get(label, 0):>6}")
    if sources:
        counts = [s.num_frames for s in sources]
        sizes = Counter(f"{s.height}x{s.width}" for s in sources)
        fps = Counter(round(video_info(s.path).fps, 2) for s in sources[:200] if s.kind == "file")
        print(f"frames per video: min {min(counts)}, median {statistics.median(counts):g}, max {max(counts)}")
        print(f"frame sizes: {dict(sizes.most_common(5))}; fps (first 200 files): {dict(fps.most_common(5))}")
    return _report_bad(bad)


def _report_bad(bad: list[str]) -> int:
    print(f"unreadable: {len(bad)}")
    for line in bad:
        print(f"  {line}")
    return 1 if bad else 0


def extract(src: Path, dst: Path, short_side: int | None, every: int) -> int:
    items, _ = find_video_sources(src)
    skipping = SkipBadFiles(skip=True)
    sources = scan_sources([it for it in items if it[0].is_file()], skipping)
    bad = skipping.bad_files
    for s in sources:
        out = dst / s.path.relative_to(src).with_suffix("")
        out.mkdir(parents=True, exist_ok=True)
        size = decode_size(s.height, s.width, short_side) if short_side else None
        keep = list(range(0, s.num_frames, every))
        for start in range(0, len(keep), 64):  # chunks: a long 720p video does not fit in memory at once
            chunk = keep[start : start + 64]
            for i, frame in zip(chunk, read_video(s.path, chunk, size=size).numpy()):
                Image.fromarray(frame).save(out / f"{i // every:05d}.jpg", quality=95)
        print(f"{s.path.relative_to(src)} -> {out.relative_to(dst)} ({len(keep)} frames)")
    return _report_bad([str(p) for p in bad])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="counts, formats and unreadable files")
    p_check.add_argument("root", type=Path)
    p_check.add_argument("--full", action="store_true", help="decode every frame, not just open each file")
    p_extract = sub.add_parser("extract", help="videos -> frame folders (JPEG)")
    p_extract.add_argument("src", type=Path)
    p_extract.add_argument("dst", type=Path)
    p_extract.add_argument("--short-side", type=int, default=None, help="resize so the short side is this")
    p_extract.add_argument("--every", type=int, default=1, help="keep every n-th frame")
    args = parser.parse_args(argv)
    try:
        if args.command == "extract":
            return extract(args.src, args.dst, args.short_side, max(1, args.every))
        if (args.root / "JPEGImages").is_dir():
            return check_davis(args.root, args.full)
        return check_folder(args.root, args.full)
    except (DataError, CorruptFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
