"""Video sources: finding the videos of a folder and scanning each once.

A *source* is one video: a file decord can read or a folder of frame images. :func:`find_video_sources`
lists ``(path, label)`` for every video under a root (class sub-folders optional);
:func:`scan_sources` opens each once for its frame count and size. A file that cannot be opened is a
:class:`~mmssl.errors.CorruptFileError` naming it, or, with a skipping
:class:`~mmssl.data.SkipBadFiles`, a logged warning, left out and remembered in ``bad_files``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from mmssl.data import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.video.io import FRAME_EXTENSIONS, is_video_file, list_frames, natural_key, video_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSource:
    """One scanned video: ``kind`` is ``"file"`` (decord) or ``"frames"`` (a frame folder). ``data``: the
    file's bytes when it is decoded from memory (a shard member; ``path`` then names it)."""

    path: Path
    label: int
    num_frames: int
    height: int
    width: int
    kind: str
    data: bytes | None = field(default=None, repr=False)


def is_frame_folder(path: Path) -> bool:
    exts = tuple(FRAME_EXTENSIONS)
    return path.is_dir() and any(p.suffix.lower() in exts for p in path.iterdir() if p.is_file())


def scan_one(path: Path, label: int, backend: str = "decord") -> VideoSource:
    """Open one video (a frame folder: its first frame's header) for its frame count and size."""
    if path.is_dir():
        files = list_frames(path)
        if not files:
            raise DataError(f"no frames in {path}")
        try:
            with Image.open(files[0]) as img:  # the header is enough for the size
                width, height = img.size
        except (OSError, ValueError, SyntaxError) as err:
            raise CorruptFileError(files[0], f"{type(err).__name__}: {err}") from err
        return VideoSource(path, label, len(files), height, width, "frames")
    info = video_info(path, backend)
    return VideoSource(path, label, info.num_frames, info.height, info.width, "file")


def scan_sources(
    items: Sequence[tuple[Path, int]], skipping: SkipBadFiles | None = None, backend: str = "decord"
) -> list[VideoSource]:
    """Open every ``(path, label)`` once; the readable sources, in order.

    A path that cannot be opened raises :class:`~mmssl.errors.CorruptFileError` naming it, or with a
    skipping ``skipping`` is logged (warning) and added to ``skipping.bad_files``.
    """
    skipping = skipping if skipping is not None else SkipBadFiles()
    start = time.perf_counter()
    kept = skipping.keep_readable(
        items, lambda item: Path(item[0]), lambda item: scan_one(Path(item[0]), item[1], backend)
    )
    log.debug("scanned %d videos in %.1fs", len(items), time.perf_counter() - start)
    return [source for _, source in kept]


def find_video_sources(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(path, label)`` for every video under ``root``, and the class names.

    A video is a file with a video suffix or a folder of frame images. When ``root`` holds class
    sub-folders (folders that are not frame folders), their names, sorted, are the classes and
    the videos inside (at any depth) get their label; otherwise every video under ``root`` gets
    label -1 and there are no classes.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"video folder not found: {root}")
    children = sorted(
        (p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name)
    )
    class_dirs = [p for p in children if p.is_dir() and not is_frame_folder(p)]
    loose = [p for p in children if (p.is_file() and is_video_file(p)) or is_frame_folder(p)]
    if class_dirs and loose:
        raise DataError(
            f"{root} mixes videos ({loose[0].name} ...) with class folders ({class_dirs[0].name} ...); "
            "put every video in a class folder, or none"
        )
    if not class_dirs:
        return [(p, -1) for p in loose], []
    items: list[tuple[Path, int]] = []
    for label, folder in enumerate(class_dirs):
        items += [(p, label) for p in videos_under(folder)]
    return items, [d.name for d in class_dirs]


def videos_under(folder: Path) -> list[Path]:
    """Every video file and frame folder below ``folder``, at any depth, in natural name order."""
    found = []
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if p.name.startswith("."):
            continue
        if p.is_file() and is_video_file(p):
            found.append(p)
        elif is_frame_folder(p):
            found.append(p)
        elif p.is_dir():
            found += videos_under(p)
    return found


def split_per_class(
    items: Sequence[tuple[Path, int]], test_fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Deterministic per-class split (seeded shuffle within each class): (train, test) lists."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in sorted({label for _, label in items}):
        members = [it for it in items if it[1] == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members)))) if len(members) > 1 else 0
        test += [members[i] for i in order[:n_test]]
        train += [members[i] for i in order[n_test:]]
    return train, test
