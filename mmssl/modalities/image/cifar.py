"""torchvision's on-disk CIFAR python format, read without running pickled code.

Layout (what ``torchvision.datasets.CIFAR10/100(download=True)`` leaves under its ``root``):

- CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5`` (the training part),
  ``test_batch`` (the test part) and ``batches.meta`` (``label_names``);
- CIFAR-100: ``cifar-100-python/`` with ``train``, ``test`` and ``meta`` (``fine_label_names``).

Each batch is a pickled dict with ``data`` (uint8 ``[N, 3072]``: the red, green and blue 32 x 32 planes of
each image, row-major) and ``labels`` (CIFAR-100: ``fine_labels``); keys may be ``str`` (the official
Python 2 files read with ``encoding="latin1"``, as torchvision does) or ``bytes`` (files written by
Python 3 with ``b"data"`` keys).

Pickle can run arbitrary code while loading. :class:`RestrictedUnpickler` resolves only the globals a
CIFAR batch needs (numpy array and dtype reconstruction, and ``_codecs.encode`` that protocol-2 pickles
use for ``bytes``); anything else (``os.system``, ``builtins.eval`` ...) is refused with a
:class:`~mmssl.errors.CorruptFileError` naming the file, before it is called.

Which files a folder means depends on the split that names it (see :mod:`.splits`): ``train`` reads the
training part, ``val`` and ``test`` the test part; a path to one batch file reads that file only.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.errors import CorruptFileError, DataError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
#: the two parts of a CIFAR folder: ``train`` (training batches) and ``test`` (the test batch)
PARTS: tuple[str, ...] = ("train", "test")
IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)


def _numpy_function(module: str, name: str) -> Callable[..., Any]:
    """``numpy._core.<module>.<name>`` (numpy 2), else ``numpy.core.<module>.<name>`` (numpy 1)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {module}.{name}")


def _allowed_globals() -> dict[tuple[str, str], Callable[[], Any]]:
    """Every global a CIFAR pickle may name, resolved lazily to the installed numpy's object.

    Arrays pickle as ``multiarray._reconstruct(ndarray, ...)`` + ``dtype`` (protocols 0-4) or
    ``numeric._frombuffer(buffer, dtype, ...)`` (protocol 5); numpy 1 writes ``numpy.core``, numpy 2
    ``numpy._core``, and either may read the other's files. Protocols 0-2 from Python 3 write ``bytes`` as
    ``_codecs.encode(text, "latin1")``.
    """
    import _codecs

    allowed: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = lambda: _numpy_function(
            "multiarray", "_reconstruct"
        )
        allowed[(f"{package}.numeric", "_frombuffer")] = lambda: _numpy_function("numeric", "_frombuffer")
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global (a function or class
    the pickle would call) raises :class:`CorruptFileError` naming ``path`` and the refused name."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise CorruptFileError(
                self.path, f"refused to unpickle {module}.{name}: not part of the CIFAR python format"
            )
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise CorruptFileError(self.path, "persistent ids are not part of the CIFAR python format")


def load_pickle(path: Path) -> dict[str, Any]:
    """The dict pickled in ``path`` (``bytes`` keys decoded), read with :class:`RestrictedUnpickler`;
    :class:`CorruptFileError` naming the file when it is not such a dict."""
    try:
        with path.open("rb") as f:
            obj = RestrictedUnpickler(f, path).load()
    except CorruptFileError:
        raise
    except OSError as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    except Exception as err:  # a damaged pickle raises almost any exception type
        raise CorruptFileError(path, f"not a readable pickle: {type(err).__name__}: {err}") from err
    if not isinstance(obj, dict):
        raise CorruptFileError(path, f"expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class CifarLayout:
    """One CIFAR python folder: which variant, where its meta file is, and its batch files per part."""

    folder: Path
    variant: str  # "CIFAR-10" or "CIFAR-100"

    @property
    def meta(self) -> Path:
        return self.folder / ("batches.meta" if self.variant == "CIFAR-10" else "meta")

    @property
    def label_key(self) -> str:
        return "labels" if self.variant == "CIFAR-10" else "fine_labels"

    @property
    def names_key(self) -> str:
        return "label_names" if self.variant == "CIFAR-10" else "fine_label_names"

    def part_files(self, part: str) -> list[Path]:
        """The batch files of ``part`` (``train``: ``data_batch_1..N`` in numeric order, or ``train``;
        ``test``: ``test_batch``, or ``test``); :class:`DataError` naming a missing one."""
        if part not in PARTS:
            raise DataError(f"unknown CIFAR part '{part}'; choose one of {', '.join(PARTS)}")
        if self.variant == "CIFAR-100":
            files = [self.folder / part]
        elif part == "test":
            files = [self.folder / "test_batch"]
        else:
            numbered = [p for p in self.folder.iterdir() if re.fullmatch(r"data_batch_\d+", p.name)]
            files = sorted(numbered, key=lambda p: int(p.name.rsplit("_", 1)[1]))
            if not files:
                raise DataError(f"no data_batch_N files in CIFAR-10 folder {self.folder}")
        for f in files:
            if not f.is_file():
                raise DataError(f"{self.variant} python folder {self.folder} has no '{f.name}'")
        return files

    def class_names(self) -> list[str]:
        if not self.meta.is_file():
            raise DataError(f"{self.variant} python folder {self.folder} has no '{self.meta.name}'")
        names = load_pickle(self.meta).get(self.names_key)
        if not isinstance(names, (list, tuple)) or not names:
            raise CorruptFileError(self.meta, f"no '{self.names_key}' list")
        return [_text(n) for n in names]


def cifar_layout(folder: Path) -> CifarLayout | None:
    """The layout of ``folder`` when it is a CIFAR python folder itself, else None."""
    if not folder.is_dir():
        return None
    if (folder / "batches.meta").is_file():
        return CifarLayout(folder, "CIFAR-10")
    if (folder / "meta").is_file() and ((folder / "train").is_file() or (folder / "test").is_file()):
        return CifarLayout(folder, "CIFAR-100")
    return None


def locate_cifar(path: Path) -> tuple[CifarLayout, list[Path] | None] | None:
    """``(layout, files)`` when ``path`` is a CIFAR python folder (``files`` None: chosen by part), a
    folder holding one (torchvision's ``root``), or one batch file in such a folder (``files = [path]``);
    None otherwise."""
    if path.is_file():
        layout = cifar_layout(path.parent)
        return (layout, [path]) if layout is not None and path != layout.meta else None
    for folder in (path, path / CIFAR10_FOLDER, path / CIFAR100_FOLDER):
        layout = cifar_layout(folder)
        if layout is not None:
            return layout, None
    return None


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` of one batch file, checked."""
    batch = load_pickle(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptFileError(path, f"'data' must be a uint8 array [N, 3072], got {got}")
    if labels is None:
        raise CorruptFileError(path, f"no '{label_key}' entry (keys: {', '.join(sorted(batch))})")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise CorruptFileError(path, f"'{label_key}' is not a list of integers: {err}") from err
    if len(labels) != len(data):
        raise CorruptFileError(path, f"{len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise CorruptFileError(path, f"labels outside [0, {num_classes}): {labels.min()}..{labels.max()}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


class CifarImages(Dataset):
    """CIFAR images in memory: items ``(uint8 [3, 32, 32], label)``, like
    :class:`~mmssl.modalities.image.folder.ImageFolderDataset`'s.

    ``classes`` (the meta file's names), ``targets``, ``source`` (folder and files, for reports),
    :meth:`sample_ids` (``<file>#<index in file>``) and :meth:`subset` are the labelled-split interface of
    :mod:`.splits`.
    """

    def __init__(
        self, images: torch.Tensor, targets: Sequence[int], classes: list[str], ids: list[str], source: str
    ) -> None:
        self.images, self.targets, self.classes = images, list(targets), classes
        self._ids, self.source = ids, source

    @classmethod
    def open(cls, path: str | Path, part: str = "train") -> CifarImages:
        """Read ``part`` of the CIFAR python folder at ``path`` (or the one batch file ``path``)."""
        path = Path(path).expanduser()
        found = locate_cifar(path)
        if found is None:
            raise DataError(f"not a CIFAR python folder or batch file: {path}")
        layout, files = found
        files = files or layout.part_files(part)
        classes = layout.class_names()
        arrays, labels, ids = [], [], []
        for f in files:
            images, lab = read_batch(f, layout.label_key, len(classes))
            arrays.append(images)
            labels.append(lab)
            name = os.path.abspath(f)
            ids += [f"{name}#{i}" for i in range(len(lab))]
        images = torch.from_numpy(np.concatenate(arrays))
        if len(images) == 0:
            raise DataError(f"no images in {', '.join(str(f) for f in files)}")
        source = f"{layout.folder} ({layout.variant} python: {', '.join(f.name for f in files)})"
        return cls(images, np.concatenate(labels).tolist(), classes, ids, source)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].clone(), self.targets[index]

    def sample_ids(self) -> list[str]:
        return list(self._ids)

    def subset(self, indices: Sequence[int]) -> CifarImages:
        """The images at ``indices`` (in that order), with their labels and ids."""
        idx = list(indices)
        return CifarImages(
            self.images[torch.as_tensor(idx, dtype=torch.long)],
            [self.targets[i] for i in idx],
            self.classes,
            [self._ids[i] for i in idx],
            self.source,
        )


__all__ = [
    "ALLOWED_GLOBALS",
    "CIFAR100_FOLDER",
    "CIFAR10_FOLDER",
    "CifarImages",
    "CifarLayout",
    "RestrictedUnpickler",
    "cifar_layout",
    "load_pickle",
    "locate_cifar",
    "read_batch",
]
