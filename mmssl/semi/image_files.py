"""Image files decoded once into one uint8 tensor in memory, for the semi-supervised folder datasets.

Semi-supervised benchmarks on small images keep the whole training set in memory (the FixMatch and
USB code bases load CIFAR-10 as one uint8 array): CIFAR-10's 50,000 32x32 training images are 150 MB
as uint8 ``[N, 3, 32, 32]``, and every training step indexes 8 (mu = 7) random images per labelled
one, which a file read per image would make the bottleneck. :func:`decode_images` decodes a list of
files once (resized and centre-cropped to ``S x S`` where their size differs), with a progress bar,
and keeps the result for the rest of the process (a retrained baseline reads the same files without
decoding them again).

Unreadable files follow :class:`~mmssl.data.SkipBadFiles`: a :class:`~mmssl.errors.CorruptFileError`
naming the file, or (``skip=True``) a warning, a count, and the file left out; no other image ever
takes its place.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from mmssl.data.skip import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.folder import IMG_EXTENSIONS, load_image

log = logging.getLogger(__name__)

#: decoded file lists kept for the rest of the process (labelled, unlabelled, test and OOD folders)
MEMO_SIZE = 4
_MEMO: OrderedDict[tuple, Decoded] = OrderedDict()


@dataclass(frozen=True)
class Decoded:
    """The readable files of a list: ``images`` uint8 ``[K, 3, S, S]``, ``kept`` ``[K]`` their positions
    in the list, ``bad`` ``(path, reason)`` of the others (skipped)."""

    images: Tensor
    kept: Tensor
    bad: tuple[tuple[Path, str], ...] = ()


def list_images(root: str | Path, extensions: Sequence[str] = IMG_EXTENSIONS) -> list[Path]:
    """Every image file under ``root`` at any depth (flat or nested; hidden files and folders left out),
    sorted by path; :class:`~mmssl.errors.DataError` when the folder is missing or has none."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"image folder not found: {base}")
    exts = tuple(e.lower() for e in extensions)
    files = []
    for folder, dirs, names in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(folder, n) for n in names if not n.startswith(".") and n.lower().endswith(exts)]
    if not files:
        raise DataError(f"no images with extensions {', '.join(exts)} under {base}")
    return sorted(files)


def fit_square(image: Tensor, size: int) -> Tensor:
    """uint8 ``[3, H, W]`` -> ``[3, size, size]``: shorter side resized to ``size`` (antialiased), then the
    central square (the evaluation geometry); unchanged when already that size."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def _key(paths: Sequence[Path], size: int) -> tuple:
    stats = []
    for p in paths:
        st = p.stat()
        stats.append((str(p), st.st_size, st.st_mtime_ns))
    return (size, tuple(stats))


def decode_images(
    paths: Sequence[Path], size: int, skipping: SkipBadFiles, what: str = "images", progress: bool = True
) -> Decoded:
    """Decode ``paths`` to uint8 ``[K, 3, size, size]`` (see the module docstring); bad files go to
    ``skipping`` (raise, or record and leave out). ``what`` names the set in the progress bar and log.

    The result is kept for the process, keyed by every path with its size and modification time and by
    ``size``: the same files are decoded once (their bad files are recorded in ``skipping`` again).
    """
    paths = [Path(p) for p in paths]
    key = _key(paths, size)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        found = _MEMO[key]
        for path, reason in found.bad:
            skipping.record(CorruptFileError(path, reason), path)
        return found
    images = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    kept: list[int] = []
    bad: list[tuple[Path, str]] = []
    bar = None
    if progress and len(paths) >= 1000:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc=f"decoding {what}", unit="img", mininterval=2.0, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for i, path in enumerate(paths):
            try:
                image = load_image(path)
            except CorruptFileError as err:
                skipping.record(err, path)  # raises unless skipping
                bad.append((path, err.reason))
            else:
                images[len(kept)] = fit_square(image, size)
                kept.append(i)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    log.info(
        "decoded %d %s (%d skipped) to %dx%d in %.1f s",
        len(kept),
        what,
        len(bad),
        size,
        size,
        time.perf_counter() - start,
    )
    decoded = Decoded(images[: len(kept)], torch.tensor(kept, dtype=torch.long), tuple(bad))
    _MEMO[key] = decoded
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)
    return decoded


def clear_memo() -> None:
    """Forget every decoded file list (frees their memory)."""
    _MEMO.clear()
