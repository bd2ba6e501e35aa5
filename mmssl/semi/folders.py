"""``semi_folder``: the semi-supervised bundle of ``semi_shapes`` built from real image folders.

The protocol is FixMatch's (Sohn et al. 2020, sec. 4.1) as the USB benchmark runs it (Wang et al.
2022): from a labelled training set take ``labels_per_class`` images of every class, drawn with a
seeded generator (CIFAR-10 with 4 or 25 labels per class: 40 / 250 labels), and use every other
training image as the unlabelled pool, its labels withheld. Hyper-parameters are tuned on a validation
split carved out of the training folder (``val: {last_per_class: N}``: the last ``N`` files of every
class, sorted by path, e.g. the last 500 of each CIFAR-10 class), disjoint from both the labelled draw
and the pool; a separate ``test`` folder is evaluated instead when given.

Recipe keys (``data:``)::

    name: semi_folder
    labelled: ../shared/data/images/cifar10/train   # ImageFolder root: <class>/<image>, any depth
    labels_per_class: 4
    val: {last_per_class: 500}          # and/or test: DIR (an ImageFolder with the same classes)
    unlabelled: DIR                     # optional: the pool from another folder (flat or nested)
    ood: {root: DIR, fraction: 0.3}     # optional: that fraction of the pool from another domain

The bundle is the one :func:`~mmssl.semi.data.semi_shapes` builds (same batch keys, same
:class:`~mmssl.semi.pool.UnlabelledPool` extra, same batched weak / strong views,
:func:`~mmssl.semi.data.semi_bundle`): ``eval_train`` is the labelled draw, ``eval_test`` the test
folder if given else the validation split (``stats["eval_split"]`` says which). The pool's true labels
(its part of the labelled folder) and its out-of-domain marks are kept in the extra for reporting only.

Every image is decoded once, resized (shorter side) and centre-cropped to ``image_size``, and held in
memory as uint8 (:mod:`mmssl.semi.image_files`). ``skip_bad`` leaves undecodable files out (a warning
naming each, ``stats["num_skipped"]``); the labelled draw is taken among the readable files, so every
class still has exactly ``labels_per_class`` labels.

Seeds (from the run's ``seed``): ``seed`` draws the labels (one generator, classes in order, as
:func:`~mmssl.semi.data.split_labelled`), ``seed + 1`` groups the pool into ``mu``-tuples, ``seed + 2``
picks the pool positions replaced by out-of-domain images and ``seed + 3`` which files of ``ood.root``
replace them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from mmssl.data import DataBundle, SkipBadFiles
from mmssl.data.source import data_source
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.image.folder import ImageFolderDataset
from mmssl.options import build_dataclass
from mmssl.semi.data import check_semi_options, replace_fraction, semi_bundle, semi_keys, split_labelled
from mmssl.semi.image_files import decode_images, list_images

Section = TypeVar("Section")

#: bad files named in ``stats["skipped_files"]`` (all of them are counted in ``num_skipped``)
MAX_NAMED_SKIPS = 20


@dataclass(frozen=True)
class ValSplit:
    """``data.val``: the last ``last_per_class`` files (sorted by path) of every class of the labelled
    folder, held out of both the labelled draw and the pool."""

    last_per_class: int

    def __post_init__(self) -> None:
        if self.last_per_class < 1:
            raise ConfigError(f"last_per_class must be >= 1, got {self.last_per_class}")


@dataclass(frozen=True)
class OODFolder:
    """``data.ood``: ``fraction`` of the unlabelled pool replaced by images drawn (seeded) from ``root``
    (any layout), marked as out of domain in the pool extra (for reporting only)."""

    root: str
    fraction: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"fraction must be in [0, 1), got {self.fraction}")


def _section(value: Section | Mapping[str, Any] | None, kind: type[Section], where: str) -> Section | None:
    """A nested section as its dataclass (a plain mapping when the builder is called directly)."""
    if value is None or isinstance(value, kind):
        return value
    return build_dataclass(kind, value, where)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ folders


@dataclass(frozen=True)
class ClassImages:
    """Decoded readable images of an ImageFolder: uint8 ``[K, 3, S, S]``, ``labels`` ``[K]``, and for each
    its rank from the end of its class's file list (0 = last file), for the validation split."""

    classes: list[str]
    images: Tensor
    labels: Tensor
    rank_from_end: Tensor


def read_class_folder(
    root: str,
    size: int,
    skipping: SkipBadFiles,
    max_per_class: int | None,
    progress: bool,
    classes: list[str] | None = None,
) -> ClassImages:
    """The images of ``root/<class>/...`` (the first ``max_per_class`` files of each class, sorted by path,
    when set), decoded; ``classes``: the class folders it must have (those of the labelled folder)."""
    folder = ImageFolderDataset(Path(root).expanduser())
    if classes is not None and folder.classes != classes:
        raise DataError(
            f"class folders of {folder.root} ({', '.join(folder.classes)}) differ from the labelled "
            f"folder's ({', '.join(classes)})"
        )
    paths: list[Path] = []
    labels: list[int] = []
    ranks: list[int] = []
    for c in range(len(folder.classes)):
        files = [p for p, label in folder.samples if label == c][:max_per_class]
        paths += files
        labels += [c] * len(files)
        ranks += range(len(files) - 1, -1, -1)
    decoded = decode_images(paths, size, skipping, f"images of {folder.root}", progress)
    return ClassImages(
        folder.classes,
        decoded.images,
        torch.tensor(labels, dtype=torch.long)[decoded.kept],
        torch.tensor(ranks, dtype=torch.long)[decoded.kept],
    )


def draw_images(root: str, n: int, size: int, skipping: SkipBadFiles, seed: int, progress: bool) -> Tensor:
    """``n`` readable images of ``root`` (any layout) in a seeded random order of its files (``seed``);
    only the drawn files are decoded."""
    files = list_images(root)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    parts: list[Tensor] = []
    got = start = 0
    while got < n and start < len(order):
        chunk = [files[i] for i in order[start : start + n - got]]
        start += len(chunk)
        part = decode_images(chunk, size, skipping, f"out-of-domain images of {root}", progress).images
        parts.append(part)
        got += len(part)
    if got < n:
        raise DataError(f"ood.root {root} has {got} readable images; the ood fraction of the pool needs {n}")
    return torch.cat(parts)


def _check_counts(data: ClassImages, candidates: Tensor, per_class: int, keep_pool: bool) -> None:
    need = per_class + int(keep_pool)
    counts = torch.bincount(data.labels[candidates], minlength=len(data.classes))
    for c, count in enumerate(counts.tolist()):
        if count < need:
            pool = " and keep some for the unlabelled pool" if keep_pool else ""
            raise DataError(
                f"class '{data.classes[c]}' has {count} readable images outside the validation split; "
                f"cannot label {per_class}{pool}"
            )


# ---------------------------------------------------------------------------------------- builder


@data_source(produces=semi_keys)
def semi_folder(
    labelled: str,
    labels_per_class: int = 4,
    unlabelled: str | None = None,
    val: ValSplit | None = None,
    test: str | None = None,
    ood: OODFolder | None = None,
    mu: int = 7,
    image_size: int = 32,
    strong: str = "randaugment",
    randaugment_ops: int = 2,
    cutout: float = 0.5,
    max_per_class: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> DataBundle:
    """Real images with ``labels_per_class`` labels per class (see the module docstring for the protocol).

    ``labelled``: an ImageFolder root (``<class>/<image>``). ``unlabelled``: the pool from this folder
    (images at any depth, no classes) instead of the rest of ``labelled``. ``val``: ``{last_per_class: N}``
    carved from ``labelled``; ``test``: an ImageFolder with the same classes; at least one of the two
    (``eval_test`` is ``test`` when given, else ``val``). ``ood``: ``{root, fraction}``, a fraction of the
    pool replaced by images of another folder. ``mu``, ``strong``, ``randaugment_ops``, ``cutout`` as for
    ``semi_shapes``. ``image_size``: every image resized (shorter side) and centre-cropped to it once.
    ``max_per_class``: read only the first N files (sorted by path) of each class of ``labelled`` and
    ``test`` (quick runs, tests); the labelled folder is decoded whole (the draw is among its readable
    files) even when the pool comes from ``unlabelled``. ``skip_bad``: leave undecodable files out
    instead of raising.
    ``progress``: a progress bar while decoding large folders.
    """
    val = _section(val, ValSplit, "data.val")
    ood = _section(ood, OODFolder, "data.ood")
    check_semi_options(strong, ood.fraction if ood is not None else 0.0, "ood.fraction")
    if labels_per_class < 1 or (max_per_class is not None and max_per_class < 1):
        raise DataError(
            f"labels_per_class and max_per_class must be >= 1, got {labels_per_class}, {max_per_class}"
        )
    if val is None and test is None:
        raise DataError(
            "semi_folder needs an evaluation split: val: {last_per_class: N} (carved from the labelled "
            "folder) or test: DIR (an ImageFolder with the same classes)"
        )
    skipping = SkipBadFiles(skip_bad)
    train = read_class_folder(labelled, image_size, skipping, max_per_class, progress)
    is_val = train.rank_from_end < (val.last_per_class if val is not None else 0)
    candidates = torch.nonzero(~is_val).flatten()
    own_pool = unlabelled is None
    _check_counts(train, candidates, labels_per_class, keep_pool=own_pool)
    lab, rest = split_labelled(train.labels[candidates], labels_per_class, seed, keep_pool=own_pool)
    lab, rest = candidates[lab], candidates[rest]

    if own_pool:
        pool, true_labels = train.images[rest], train.labels[rest]  # indexing copies: the memo stays intact
    else:
        files = list_images(unlabelled)
        decoded = decode_images(files, image_size, skipping, f"images of {unlabelled}", progress)
        # The decoded tensor is kept for the process: out-of-domain images are written into a copy.
        pool, true_labels = (decoded.images.clone() if ood is not None else decoded.images), None
        if len(pool) < mu:
            raise DataError(
                f"the unlabelled folder {unlabelled} has {len(pool)} readable images, fewer than mu={mu}"
            )

    def make_ood(n: int) -> Tensor:
        assert ood is not None
        return draw_images(ood.root, n, image_size, skipping, seed + 3, progress)

    is_ood, n_ood = replace_fraction(pool, true_labels, ood.fraction if ood else 0.0, seed, make_ood)

    if test is not None:
        held_out = read_class_folder(test, image_size, skipping, max_per_class, progress, train.classes)
        eval_images, eval_labels = held_out.images, held_out.labels
    else:
        eval_images, eval_labels = train.images[is_val], train.labels[is_val]
    skipped = [str(p) for p in skipping.bad_files]
    return semi_bundle(
        "semi_folder",
        labelled=train.images[lab],
        labels=train.labels[lab],
        pool=pool,
        test=eval_images,
        test_labels=eval_labels,
        num_classes=len(train.classes),
        mu=mu,
        seed=seed,
        strong=strong,
        randaugment_ops=randaugment_ops,
        cutout=cutout,
        is_ood=is_ood,
        true_labels=true_labels,
        stats={
            "labelled_root": str(labelled),
            "unlabelled_root": str(unlabelled) if unlabelled is not None else None,
            "class_names": list(train.classes),
            "image_size": image_size,
            "labels_per_class": labels_per_class,
            "num_labelled": len(lab),
            "num_unlabelled": len(pool),
            "num_val": int(is_val.sum()),
            "eval_split": "test" if test is not None else "val",
            "test_root": str(test) if test is not None else None,
            "num_test": len(eval_images),
            "mu": mu,
            "ood_root": ood.root if ood is not None and n_ood > 0 else None,
            "ood_fraction": ood.fraction if ood is not None else 0.0,
            "num_ood": n_ood,
            "max_per_class": max_per_class,
            "num_skipped": len(skipped),
            "skipped_files": skipped[:MAX_NAMED_SKIPS],
        },
    )
