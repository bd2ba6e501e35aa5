"""Unlabelled images for pretraining: a folder of any depth, or a file list.

``images`` (the ``image_files`` dataset's option; ``semi_folder`` lists its ``unlabelled`` and ``ood.root``
the same way) is one of

- a folder: every file under it, at any depth, whose extension is an image one (``.jpg``, ``.png`` ...,
  :data:`~.folder.IMG_EXTENSIONS`, case-insensitive); names starting with ``.`` (files and folders) are
  left out; sorted by path;
- a ``.csv`` file with a ``path`` column (other columns are ignored);
- any other file: a list with one path per line (blank lines and lines starting with ``#`` ignored).

Listed paths are relative to the list's folder (absolute ones are kept). A listed file that does not
exist is a :class:`~mmssl.errors.DataError` naming it.

Undecodable files: :class:`~mmssl.errors.CorruptFileError` naming the file when it is read; with
``skip_bad=True`` every file is decoded once when the dataset is built (in threads), and bad or missing
ones are logged, counted (``num_skipped``) and left out of the index, so no other sample stands in for
them and every index is a distinct readable image.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mmssl.data.keys import LABEL
from mmssl.data.skip import SkipBadFiles
from mmssl.errors import DataError
from mmssl.modalities.image.folder import IMG_EXTENSIONS, keep_readable, load_image

#: the label an unlabelled item carries in ``(image, label)`` form (dropped from pretraining items)
NO_LABEL = -1


def _visible(name: str) -> bool:
    return not name.startswith(".")


def images_in_folder(root: Path, extensions: Sequence[str] = IMG_EXTENSIONS) -> list[Path]:
    """Every image file under ``root`` at any depth (hidden names left out), sorted."""
    exts = tuple(e.lower() for e in extensions)
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [d for d in subfolders if _visible(d)]
        found += [Path(folder, f) for f in files if _visible(f) and f.lower().endswith(exts)]
    return sorted(found)


def images_in_list(list_file: Path) -> list[Path]:
    """The paths a ``.csv`` (``path`` column) or plain list file names, relative to its folder."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read image list {list_file}: {err}") from err
    if list_file.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if "path" not in (reader.fieldnames or []):
            columns = ", ".join(reader.fieldnames or []) or "none"
            raise DataError(f"image list {list_file} has no 'path' column (columns: {columns})")
        entries = [(row.get("path") or "").strip() for row in reader]
    else:
        entries = [line.strip() for line in text.splitlines()]
        entries = [e for e in entries if not e.startswith("#")]
    base = list_file.parent
    return [base / Path(e).expanduser() for e in entries if e]


def list_images(path: str | Path) -> list[Path]:
    """The image files ``path`` (a folder or a list file) names; see the module docstring."""
    location = Path(path).expanduser()
    if location.is_dir():
        paths = images_in_folder(location)
        if not paths:
            raise DataError(f"no images with extensions {', '.join(IMG_EXTENSIONS)} under {location}")
        return paths
    if location.is_file():
        paths = images_in_list(location)
        if not paths:
            raise DataError(f"image list {location} names no files")
        return paths
    raise DataError(f"images not found: {location} (a folder of images, or a .txt / .csv list of them)")


class UnlabelledImages(Dataset):
    """Image files as items ``(uint8 [3, H, W], -1)`` (see the module docstring for ``images`` and
    ``skip_bad``). ``source`` names what was read; ``paths`` are the files in index order."""

    def __init__(self, images: str | Path, skip_bad: bool = False, workers: int | None = None) -> None:
        self.source = str(Path(images).expanduser())
        paths = list_images(images)
        self.skipping = SkipBadFiles(skip_bad)
        if skip_bad:
            paths = keep_readable(paths, self.skipping, workers)
            if not paths:
                raise DataError(f"no readable image in {self.source}: all {self.num_skipped} are bad")
        else:
            missing = [p for p in paths if not p.is_file()]
            if missing:
                shown = ", ".join(str(p) for p in missing[:5])
                raise DataError(
                    f"{len(missing)} listed image(s) of {self.source} not found: {shown}"
                    f"{' ...' if len(missing) > 5 else ''} (skip_bad: true leaves them out)"
                )
        self.paths: list[Path] = paths

    @property
    def num_skipped(self) -> int:
        return self.skipping.num_skipped

    @property
    def bad_files(self) -> list[Path]:
        return self.skipping.bad_files

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[index]), NO_LABEL


class WithoutLabel(Dataset):
    """Pretraining items of ``base`` without their ``label`` entry (unlabelled data has none to give)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        item.pop(LABEL, None)
        return item


__all__ = [
    "NO_LABEL",
    "UnlabelledImages",
    "WithoutLabel",
    "images_in_folder",
    "images_in_list",
    "keep_readable",
    "list_images",
]
