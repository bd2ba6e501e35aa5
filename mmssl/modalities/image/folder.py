"""The ImageFolder reader: ``root/<class>/<image>`` files as ``(uint8 [3, H, W], label)`` items."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from mmssl.data.skip import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_image(path: Path) -> torch.Tensor:
    """Decode fully (``convert`` forces it, so truncated files fail here) to uint8 ``[3, H, W]``;
    :class:`~mmssl.errors.CorruptFileError` naming the file when PIL cannot."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    return TF.pil_to_tensor(rgb)


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` reader (classes = sorted sub-folder names).

    Items: ``(transform(img), label)`` where ``img`` is a uint8 RGB tensor ``[3, H, W]``
    (``transform=None`` returns it as is). Undecodable files follow :class:`~mmssl.data.SkipBadFiles`:
    :class:`~mmssl.errors.CorruptFileError` naming the file, or with ``skip_bad=True`` a warning naming
    it (once) and the next readable sample instead (``num_skipped`` counts distinct bad files seen by
    this process; each DataLoader worker keeps its own count).

    ``source``, :meth:`sample_ids` and :meth:`subset` are the labelled-split interface of
    :mod:`~mmssl.modalities.image.splits` (a subset substitutes bad files from its own samples only).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[torch.Tensor], Any] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        skip_bad: bool = False,
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
        """The samples at ``indices`` (in that order), same classes and options; a bad file is replaced by
        the next readable sample of the subset, never by one outside it."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in indices]
        part.targets = [label for _, label in part.samples]
        part._paths = [path for path, _ in part.samples]
        part.skipping = SkipBadFiles(self.skip_bad)
        return part

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return load_image(path), label

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img, label = self.skipping.next_readable(index, self._paths, self._load, where=str(self.root))
        return (self.transform(img) if self.transform is not None else img), label
