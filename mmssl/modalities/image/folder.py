"""Image files decoded to uint8, and the ImageFolder reader (``root/<class>/<image>`` files as
``(uint8 [3, H, W], label)`` items).

:func:`load_image` decodes one file; :func:`fit_square` gives it the evaluation geometry (shorter side
resized, central square); :func:`decode_each` decodes a list in threads and :func:`keep_readable` keeps
the files that decode, bad ones going to a :class:`~mmssl.data.SkipBadFiles`; :func:`decode_images`
decodes a list once into one uint8 ``[K, 3, S, S]`` tensor kept in memory for the rest of the process.

Semi-supervised benchmarks on small images keep the whole training set in memory (the FixMatch and USB
code bases load CIFAR-10 as one uint8 array): CIFAR-10's 50,000 32x32 training images are 150 MB as
uint8, and every training step indexes 8 (mu = 7) random images per labelled one, which a file read per
image would make the bottleneck. A retrained baseline reads the same files without decoding them again.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from mmssl.data.skip import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError

log = logging.getLogger(__name__)

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_image(path: Path | str, data: bytes | None = None) -> torch.Tensor:
    """Decode fully (``convert`` forces it, so truncated files fail here) to uint8 ``[3, H, W]``;
    :class:`~mmssl.errors.CorruptFileError` naming the file when PIL cannot. ``data``: the file's bytes
    (e.g. a shard member), ``path`` then only names it in errors.

    A file is read whole before decoding: PIL reads a file object in many small chunks (38 reads for a
    1 KB CIFAR JPEG), one system call each, which cost more than the decode itself."""
    try:
        if data is None:
            data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    return TF.pil_to_tensor(rgb)


def fit_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> ``[..., 3, size, size]``: shorter side resized to ``size`` (antialiased),
    then the central square (the evaluation geometry); unchanged when already that size."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return TF.center_crop(TF.resize(images, size, antialias=True), [size, size])


def _attempt(path: Path, size: int | None) -> torch.Tensor | CorruptFileError | None:
    try:
        image = load_image(path)
    except CorruptFileError as err:
        return err
    return fit_square(image, size) if size is not None else None


def decode_each(
    paths: Sequence[Path], size: int | None = None, workers: int | None = None
) -> Iterator[tuple[int, torch.Tensor | None, CorruptFileError | None]]:
    """Decode ``paths`` in ``workers`` threads (default: up to 8); yields, in order, ``(position, image,
    error)``: the image fitted to ``size`` (:func:`fit_square`; None without ``size``: a readability
    check), or the :class:`~mmssl.errors.CorruptFileError` of a bad file. Stopping early cancels the
    files not yet started."""
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))
    try:
        for i, result in enumerate(pool.map(partial(_attempt, size=size), paths)):
            if isinstance(result, CorruptFileError):
                yield i, None, result
            else:
                yield i, result, None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def keep_readable(paths: Sequence[Path], skipping: SkipBadFiles, workers: int | None = None) -> list[Path]:
    """The paths that decode, in order; the others recorded with ``skipping`` (which raises on the first
    when it does not skip). Decoding runs in ``workers`` threads (default: up to 8, :func:`decode_each`)."""
    kept = []
    for i, _, err in decode_each(paths, workers=workers):
        if err is None:
            kept.append(paths[i])
        else:
            skipping.record(err, paths[i])
    return kept


@dataclass(frozen=True)
class Decoded:
    """The readable files of a list: ``images`` uint8 ``[K, 3, S, S]``, ``kept`` ``[K]`` their positions
    in the list, ``bad`` ``(path, reason)`` of the others (skipped)."""

    images: torch.Tensor
    kept: torch.Tensor
    bad: tuple[tuple[Path, str], ...] = ()


#: decoded file lists kept for the rest of the process (e.g. labelled, unlabelled, test and OOD folders)
MEMO_SIZE = 4
_MEMO: OrderedDict[tuple, Decoded] = OrderedDict()


def _memo_key(paths: Sequence[Path], size: int) -> tuple:
    stats = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:  # missing: decoding names it
            stats.append((str(p), -1, -1))
        else:
            stats.append((str(p), st.st_size, st.st_mtime_ns))
    return (size, tuple(stats))


def decode_images(
    paths: Sequence[str | Path],
    size: int,
    skipping: SkipBadFiles,
    what: str = "images",
    progress: bool = True,
    workers: int | None = None,
) -> Decoded:
    """Decode ``paths`` to uint8 ``[K, 3, size, size]`` (:func:`fit_square`), with a progress bar
    (``progress``, from 1,000 files; ``what`` names the set in it and in the log); bad files go to
    ``skipping`` (raise, or record and leave out: no other image takes their place).

    The result is kept for the process, keyed by every path with its size and modification time and by
    ``size``: the same files are decoded once (their bad files are recorded in ``skipping`` again).
    """
    files = [Path(p) for p in paths]
    key = _memo_key(files, size)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        found = _MEMO[key]
        for path, reason in found.bad:
            skipping.record(CorruptFileError(path, reason), path)
        return found
    images = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    kept: list[int] = []
    bar = None
    if progress and len(files) >= 1000:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), desc=f"decoding {what}", unit="img", mininterval=2.0, dynamic_ncols=True)
    start = time.perf_counter()
    bad: list[tuple[Path, str]] = []
    try:
        for i, image, err in decode_each(files, size, workers):
            if bar is not None:
                bar.update(1)
            if err is not None:
                skipping.record(err, files[i])  # raises unless skipping
                bad.append((files[i], err.reason))
            else:
                images[len(kept)] = image
                kept.append(i)
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


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` reader (classes = sorted sub-folder names).

    Items: ``(transform(img), label)`` where ``img`` is a uint8 RGB tensor ``[3, H, W]``
    (``transform=None`` returns it as is). Undecodable files follow :class:`~mmssl.data.SkipBadFiles`:
    :class:`~mmssl.errors.CorruptFileError` naming the file when it is read, or with ``skip_bad=True``
    every file is decoded once when the dataset is built (in ``workers`` threads, :func:`keep_readable`)
    and the bad ones are logged (a warning naming each), listed in ``bad_files``, counted in
    ``num_skipped`` and left out of the index: no other sample ever stands in for them, so every index
    is a distinct readable image with its own label.

    ``source``, :meth:`sample_ids` and :meth:`subset` are the labelled-split interface of
    :mod:`~mmssl.modalities.image.splits` (a subset shares its parent's ``bad_files``: report those of
    the folder, not of each subset).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[torch.Tensor], Any] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        skip_bad: bool = False,
        workers: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        self.transform = transform
        self.skipping = SkipBadFiles(skip_bad)
        exts = tuple(e.lower() for e in extensions)
        self.classes: list[str] = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not self.classes:
            raise DataError(f"no class sub-folders in {self.root} (expected root/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in self.classes:
            files = sorted(p for p in (self.root / c).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            self.samples += [(p, self.class_to_idx[c]) for p in files]
        if not self.samples:
            raise DataError(f"no images with extensions {', '.join(exts)} under {self.root}")
        if skip_bad:
            readable = set(keep_readable([path for path, _ in self.samples], self.skipping, workers))
            self.samples = [(path, label) for path, label in self.samples if path in readable]
            if not self.samples:
                raise DataError(f"no readable image under {self.root}: all {self.num_skipped} are bad")
        self.targets: list[int] = [label for _, label in self.samples]
        self._paths = [path for path, _ in self.samples]

    @property
    def skip_bad(self) -> bool:
        return self.skipping.skip

    @property
    def bad_files(self) -> list[Path]:
        return self.skipping.bad_files

    @property
    def num_skipped(self) -> int:
        return self.skipping.num_skipped

    @property
    def source(self) -> str:
        """The folder, as reports name it."""
        return str(self.root)

    def sample_ids(self) -> list[str]:
        """One id per sample: its absolute path (files given twice, e.g. train and test, compare equal)."""
        return [os.path.abspath(path) for path in self._paths]

    def subset(self, indices: Sequence[int]) -> ImageFolderDataset:
        """The samples at ``indices`` (in that order), same classes and options (and the same
        ``skipping``: the folder's bad files, found when it was built)."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in indices]
        part.targets = [label for _, label in part.samples]
        part._paths = [path for path, _ in part.samples]
        return part

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        img = load_image(path)  # a file broken since the dataset was built raises, naming it
        return (self.transform(img) if self.transform is not None else img), label
