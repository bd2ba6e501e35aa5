"""Labelled image splits from anywhere: the ``splits`` section of ``image_folder`` (and ``eval`` of
``image_files``; ``semi_folder`` opens its folders with :func:`open_split` and carves its ``val`` with
:class:`HoldOut` too).

::

    data:
      name: image_folder
      splits:
        train: ../shared/data/images/cifar10/train   # ImageFolder root, CIFAR python folder or batch file
        val: {last_per_class: 500}                   # a path, or carved from train (see HoldOut)
        test: null                                   # optional: a path (e.g. the official test split)

Each split path is one of

- an ImageFolder root, ``<path>/<class>/<image>`` (:class:`~.folder.ImageFolderDataset`);
- a CIFAR python folder (``cifar-10-batches-py/``, ``cifar-100-python/``, or torchvision's ``root`` that
  holds one; :mod:`.cifar`): as ``train`` it reads the training batches (``data_batch_1..5``; CIFAR-100
  ``train``), as ``val`` or ``test`` the test batch (``test_batch``; ``test``). So
  ``train: DIR`` with ``test: DIR`` is CIFAR's official train / test split;
- one CIFAR batch file (e.g. ``.../cifar-10-batches-py/data_batch_5``): that file only.

Relative paths are relative to the working directory. ``val`` may also be carved from ``train``
(:class:`HoldOut`): ``{last_per_class: N}`` holds out the last ``N`` samples of each class in the
train split's order (sorted file names for a folder, batch order for CIFAR), deterministic, e.g. CIFAR-10
val = the last 500 per class = 5,000 images; ``{fraction: F, seed: S}`` holds out ``round(F * n_c)``
samples of each class ``c``, drawn with a generator seeded by ``(S, c)`` (``S`` defaults to 0 and does not
follow the run's seed, so every run of a recipe sees the same split).

Semantics: pretraining uses train minus the carved val; ``eval_train`` is that same train part
(labelled, evaluation transform); ``eval_test`` is ``test`` when given, else ``val`` (neither: no
labelled evaluation). So ``mmssl eval RECIPE ckpt=... data.splits.test=DIR`` measures a checkpoint on
``DIR`` with the training data unchanged. ``stats["eval_split"]`` says which split the figures are
measured on.

With ``skip_bad`` an image folder decodes every file once when it is opened and leaves the bad ones out
of its index (:class:`~.folder.ImageFolderDataset`); ``stats()`` lists them (``num_skipped``,
``bad_files``).

Checks: every split has the same class names (in the same order) as ``train``; ``val`` and ``test`` share
no sample with the train part (same file path, or same CIFAR file and index); unknown keys are named
when the recipe loads (the dataclasses below).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mmssl.data.skip import SkipBadFiles
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.image.cifar import CifarImages, locate_cifar
from mmssl.modalities.image.folder import Decoded, ImageFolderDataset, decode_images, fit_square
from mmssl.options import build_dataclass

#: which part of a CIFAR python folder each split reads
CIFAR_PART_OF_SPLIT: dict[str, str] = {"train": "train", "val": "test", "test": "test"}


@dataclass(frozen=True)
class HoldOut:
    """A validation split carved from the train split: exactly one of ``last_per_class`` (the last N
    samples of each class, in the train split's order) or ``fraction`` (a seeded random ``fraction`` of each
    class; ``seed`` defaults to 0)."""

    last_per_class: int | None = None
    fraction: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if (self.last_per_class is None) == (self.fraction is None):
            raise ConfigError("give exactly one of last_per_class: N or fraction: F (with seed: S)")
        if self.last_per_class is not None:
            if self.last_per_class < 1:
                raise ConfigError(f"last_per_class must be >= 1, got {self.last_per_class}")
            if self.seed is not None:
                raise ConfigError("seed applies to fraction only (last_per_class is deterministic)")
        if self.fraction is not None and not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"fraction must lie in (0, 1), got {self.fraction}")

    def describe(self, train_source: str) -> str:
        if self.last_per_class is not None:
            return f"last {self.last_per_class} per class of {train_source}"
        return f"fraction {self.fraction} per class (seed {self.seed or 0}) of {train_source}"


@dataclass(frozen=True)
class ImageSplits:
    """Where each labelled split comes from (see the module docstring): ``train`` a path (required),
    ``val`` a path or a :class:`HoldOut` mapping, ``test`` a path; ``val`` and ``test`` optional."""

    train: str | None = None
    val: str | HoldOut | None = None
    test: str | None = None

    def __post_init__(self) -> None:
        if not self.train:
            raise ConfigError(
                "train is required: an ImageFolder root (<class>/<image>) or a CIFAR python folder"
            )
        if isinstance(self.val, Mapping):
            # A union field is passed through as written; check the mapping here (keys named).
            object.__setattr__(self, "val", build_dataclass(HoldOut, self.val, "val"))
        elif self.val is not None and not isinstance(self.val, (str, Path, HoldOut)):
            raise ConfigError(
                f"val must be a folder, {{last_per_class: N}} or {{fraction: F, seed: S}}, got {self.val!r}"
            )
        if isinstance(self.val, Path):
            object.__setattr__(self, "val", str(self.val))


def as_image_splits(value: ImageSplits | Mapping[str, Any] | None, where: str) -> ImageSplits | None:
    """The section as :class:`ImageSplits` (a plain mapping when a builder is called directly)."""
    if value is None or isinstance(value, ImageSplits):
        return value
    return build_dataclass(ImageSplits, value, where)


class LabelledImages(Protocol):
    """What a labelled split offers (:class:`~.folder.ImageFolderDataset`, :class:`~.cifar.CifarImages`):
    items ``(uint8 [3, H, W], label)``, ``classes``, ``targets``, a ``source`` to report, one id per sample
    (to check disjointness) and subsets that keep all of it."""

    classes: list[str]
    targets: list[int]

    @property
    def source(self) -> str: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...

    def sample_ids(self) -> list[str]: ...

    def subset(self, indices: Sequence[int]) -> LabelledImages: ...


def open_split(path: str, split: str, *, skip_bad: bool, where: str) -> LabelledImages:
    """The labelled images at ``path`` for split ``split`` (``train``, ``val`` or ``test``; it picks the
    part of a CIFAR folder). Errors name ``where`` (the recipe key, e.g. ``data.splits.train``)."""
    location = Path(path).expanduser()
    try:
        if locate_cifar(location) is not None:
            return CifarImages.open(location, CIFAR_PART_OF_SPLIT[split])
        if location.is_dir():
            return ImageFolderDataset(location, skip_bad=skip_bad)
    except DataError as err:
        raise DataError(f"{where}: {err}") from None
    if not location.exists():
        raise DataError(f"{where}: not found: {location}")
    raise DataError(
        f"{where}: {location} is neither an image folder (<class>/<image>) nor a CIFAR python "
        "folder or batch file"
    )


def decode_split(split: LabelledImages, size: int, skipping: SkipBadFiles, progress: bool = True) -> Decoded:
    """The images of ``split`` as one uint8 ``[K, 3, size, size]`` tensor in memory (:func:`.fit_square`'s
    geometry), ``kept`` their positions in the split: an image folder's files decoded once per process
    (:func:`.decode_images`, bad files to ``skipping``), a CIFAR split's images as they are in memory."""
    if isinstance(split, CifarImages):
        return Decoded(fit_square(split.images, size), torch.arange(len(split)))
    if not isinstance(split, ImageFolderDataset):
        raise TypeError(f"cannot decode a {type(split).__name__}")
    paths = [path for path, _ in split.samples]
    return decode_images(paths, size, skipping, f"images of {split.source}", progress)


def carve(
    targets: Sequence[int], classes: Sequence[str], holdout: HoldOut, source: str
) -> tuple[list[int], list[int]]:
    """``(train_indices, val_indices)`` of a split with these ``targets`` (each sorted); see
    :class:`HoldOut`. :class:`DataError` when a class would keep no training sample."""
    by_class: list[list[int]] = [[] for _ in classes]
    for i, label in enumerate(targets):
        by_class[label].append(i)
    val: list[int] = []
    for c, members in enumerate(by_class):
        n = len(members)
        if n == 0:  # an empty class folder: nothing to hold out
            continue
        if holdout.last_per_class is not None:
            k = holdout.last_per_class
            chosen = members[n - k :] if k < n else members
        else:
            k = math.floor(holdout.fraction * n + 0.5)  # type: ignore[operator]
            rng = np.random.default_rng([holdout.seed or 0, c])
            chosen = [members[j] for j in np.sort(rng.permutation(n)[:k])]
        if k >= n:
            raise DataError(
                f"val: class {classes[c]!r} of {source} has {n} samples; "
                f"holding out {k} leaves no train sample"
            )
        val += chosen
    held = set(val)
    return [i for i in range(len(targets)) if i not in held], sorted(val)


@dataclass
class ResolvedSplits:
    """The labelled splits of an :class:`ImageSplits` section, opened and checked."""

    train: LabelledImages
    val: LabelledImages | None
    test: LabelledImages | None
    train_source: str
    val_source: str | None
    #: the undecodable files left out of the opened folders (``skip_bad``), each once
    bad_files: list[Path] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def evaluation(self) -> LabelledImages | None:
        """What ``eval_test`` is: ``test`` when given, else ``val`` (else None)."""
        return self.test if self.test is not None else self.val

    @property
    def eval_split(self) -> str:
        """Which split the figures are measured on, for reports."""
        if self.test is not None:
            return f"test ({self.test.source})"
        if self.val is not None:
            return f"val ({self.val_source})"
        return "none"

    def stats(self) -> dict[str, Any]:
        return {
            "train_split": self.train_source,
            "val_split": self.val_source,
            "test_split": self.test.source if self.test is not None else None,
            "eval_split": self.eval_split,
            "num_val": len(self.val) if self.val is not None else 0,
            "num_skipped": len(self.bad_files),
            "bad_files": [str(p) for p in self.bad_files],
        }


def _check_classes(train: LabelledImages, other: LabelledImages, split: str, where: str) -> None:
    if list(other.classes) == list(train.classes):
        return
    only_train = sorted(set(train.classes) - set(other.classes))
    only_other = sorted(set(other.classes) - set(train.classes))
    detail = (
        f"only in train: {', '.join(only_train) or '-'}; only in {split}: {', '.join(only_other) or '-'}"
        if only_train or only_other
        else "same names in a different order"
    )
    raise DataError(
        f"{where}: class names differ between train ({train.source}) and {split} ({other.source}): {detail}"
    )


def _check_disjoint(train: LabelledImages, other: LabelledImages, split: str, where: str) -> None:
    shared = set(train.sample_ids()).intersection(other.sample_ids())
    if shared:
        raise DataError(
            f"{where}: {split} ({other.source}) shares {len(shared)} sample(s) with train, "
            f"e.g. {min(shared)}; give disjoint folders or carve val from train"
        )


def resolve_splits(
    splits: ImageSplits, *, skip_bad: bool = False, where: str = "data.splits"
) -> ResolvedSplits:
    """Open every split of ``splits``, carve ``val`` when asked and check classes and disjointness."""
    full = open_split(str(splits.train), "train", skip_bad=skip_bad, where=f"{where}.train")
    train, val, val_source = full, None, None
    if isinstance(splits.val, HoldOut):
        train_idx, val_idx = carve(full.targets, full.classes, splits.val, full.source)
        train, val = full.subset(train_idx), full.subset(val_idx)
        val_source = splits.val.describe(full.source)
    elif splits.val is not None:
        val = open_split(splits.val, "val", skip_bad=skip_bad, where=f"{where}.val")
        val_source = val.source
    test = open_split(splits.test, "test", skip_bad=skip_bad, where=f"{where}.test") if splits.test else None
    for split, other in (("val", val), ("test", test)):
        if other is not None:
            _check_classes(train, other, split, where)
            _check_disjoint(train, other, split, where)
    opened = [full] + ([val] if val is not None and not isinstance(splits.val, HoldOut) else [])
    opened += [test] if test is not None else []
    bad = list(dict.fromkeys(p for split in opened for p in getattr(split, "bad_files", [])))
    return ResolvedSplits(train, val, test, full.source, val_source, bad)


__all__ = [
    "CIFAR_PART_OF_SPLIT",
    "HoldOut",
    "ImageSplits",
    "LabelledImages",
    "ResolvedSplits",
    "as_image_splits",
    "carve",
    "decode_split",
    "open_split",
    "resolve_splits",
]
