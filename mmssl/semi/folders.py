"""``semi_folder``: the semi-supervised bundle of ``semi_shapes`` built from real images.

The protocol is FixMatch's (Sohn et al. 2020, sec. 4.1) as the USB benchmark runs it (Wang et al.
2022): from a labelled training set take ``labels_per_class`` images of every class, drawn with a
seeded generator (CIFAR-10 with 4 or 25 labels per class: 40 / 250 labels), and use every other
training image as the unlabelled pool, its labels withheld. Hyper-parameters are tuned on a validation
split carved out of the training set (``val: {last_per_class: N}``: the last ``N`` samples of every
class, in the training set's order, e.g. the last 500 files of each CIFAR-10 class; or ``{fraction: F,
seed: S}``), disjoint from both the labelled draw and the pool; a separate ``test`` set is evaluated
instead when given.

Recipe keys (``data:``)::

    name: semi_folder
    labelled: ../shared/data/images/cifar10/train   # ImageFolder root (<class>/<image>) or CIFAR folder
    labels_per_class: 4
    val: {last_per_class: 500}          # and/or test: PATH (same classes; a CIFAR folder: its test batch)
    unlabelled: PATH                    # optional: the pool from another folder (any depth) or file list
    ood: {root: PATH, fraction: 0.3}    # optional: that fraction of the pool from another domain

The image readers are the image modality's: ``labelled`` and ``test`` are opened as ``image_folder``'s
splits are (:func:`~mmssl.modalities.image.splits.open_split`: an ImageFolder root, a CIFAR python
folder, whose training batches ``labelled`` reads and whose test batch ``test`` reads, or one batch
file), ``val`` is :class:`~mmssl.modalities.image.splits.HoldOut` carved with
:func:`~mmssl.modalities.image.splits.carve`, ``unlabelled`` and ``ood.root`` are listed as
``image_files``'s ``images`` (:func:`~mmssl.modalities.image.unlabelled.list_images`: a folder of any
depth, hidden names left out, or a ``.txt`` / ``.csv`` list).

The bundle is the one :func:`~mmssl.semi.data.semi_shapes` builds (same batch keys, same
:class:`~mmssl.semi.pool.UnlabelledPool` extra, same batched weak / strong views,
:func:`~mmssl.semi.data.semi_bundle`): ``eval_train`` is the labelled draw, ``eval_test`` the test
set if given else the validation split (``stats["eval_split"]`` says which). The pool's true labels
(its part of the labelled set) and its out-of-domain marks are kept in the extra for reporting only.

Every image is decoded once, resized (shorter side) and centre-cropped to ``image_size``, and held in
memory as uint8 (:func:`~mmssl.modalities.image.folder.decode_images`). ``skip_bad`` leaves undecodable
files out (a warning naming each, ``stats["num_skipped"]``); the labelled draw is taken among the
readable files, so every class still has exactly ``labels_per_class`` labels.

Seeds (from the run's ``seed``): ``seed`` draws the labels (one generator, classes in order, as
:func:`~mmssl.semi.data.split_labelled`), ``seed + 1`` groups the pool into ``mu``-tuples, ``seed + 2``
picks the pool positions replaced by out-of-domain images and ``seed + 3`` which files of ``ood.root``
replace them. ``val: {fraction: F}`` has its own ``seed`` (default 0), as in ``image_folder``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from mmssl.data import DataBundle, SkipBadFiles
from mmssl.data.source import data_source
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.image.folder import decode_images
from mmssl.modalities.image.splits import HoldOut, carve, decode_split, open_split
from mmssl.modalities.image.unlabelled import list_images
from mmssl.options import build_dataclass
from mmssl.semi.data import check_semi_options, replace_fraction, semi_bundle, semi_keys, split_labelled

Section = TypeVar("Section")

#: bad files named in ``stats["skipped_files"]`` (all of them are counted in ``num_skipped``)
MAX_NAMED_SKIPS = 20


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
    """The readable images of a labelled set, decoded: uint8 ``[K, 3, S, S]``, ``labels`` ``[K]``, and
    ``held_out`` ``[K]``: in the validation split carved from it."""

    classes: list[str]
    images: Tensor
    labels: Tensor
    held_out: Tensor
    source: str


def first_per_class(targets: Sequence[int], n: int) -> list[int]:
    """The positions of the first ``n`` samples of every class, in order."""
    taken: dict[int, int] = {}
    keep = []
    for i, label in enumerate(targets):
        if taken.get(label, 0) < n:
            taken[label] = taken.get(label, 0) + 1
            keep.append(i)
    return keep


def read_labelled(
    path: str,
    split: str,
    size: int,
    skipping: SkipBadFiles,
    max_per_class: int | None,
    progress: bool,
    where: str,
    holdout: HoldOut | None = None,
    classes: list[str] | None = None,
) -> ClassImages:
    """The labelled images at ``path`` (``split``: ``train`` or ``test``, the part of a CIFAR folder it
    reads; the first ``max_per_class`` samples of each class when set), ``holdout`` carved from them
    before decoding (so a bad file in it is left out, not replaced), decoded; ``classes``: the classes it
    must have (those of the labelled set)."""
    # Opened without skip_bad: decode_split below decodes every file once (bad ones to ``skipping``);
    # an ImageFolderDataset opened with skip_bad would decode them all a first time to check them.
    data = open_split(path, split, skip_bad=False, where=where)
    if classes is not None and list(data.classes) != classes:
        raise DataError(
            f"class folders of {data.source} ({', '.join(data.classes)}) differ from the labelled "
            f"folder's ({', '.join(classes)})"
        )
    if max_per_class is not None:
        data = data.subset(first_per_class(data.targets, max_per_class))
    held_out = torch.zeros(len(data), dtype=torch.bool)
    if holdout is not None:
        held_out[carve(data.targets, data.classes, holdout, data.source)[1]] = True
    decoded = decode_split(data, size, skipping, progress)
    labels = torch.tensor(data.targets, dtype=torch.long)[decoded.kept]
    return ClassImages(list(data.classes), decoded.images, labels, held_out[decoded.kept], data.source)


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
    val: HoldOut | None = None,
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

    ``labelled``: an ImageFolder root (``<class>/<image>``) or a CIFAR python folder (its training
    batches). ``unlabelled``: the pool from this folder (images at any depth, no classes) or file list
    instead of the rest of ``labelled``. ``val``: ``{last_per_class: N}`` or ``{fraction: F, seed: S}``
    carved from ``labelled`` (:class:`~mmssl.modalities.image.splits.HoldOut`); ``test``: an ImageFolder
    or CIFAR folder (its test batch) with the same classes; at least one of the two (``eval_test`` is
    ``test`` when given, else ``val``). ``ood``: ``{root, fraction}``, a fraction of the pool replaced by
    images of another folder. ``mu``, ``strong``, ``randaugment_ops``, ``cutout`` as for
    ``semi_shapes``. ``image_size``: every image resized (shorter side) and centre-cropped to it once.
    ``max_per_class``: read only the first N samples (files sorted by path) of each class of ``labelled``
    and ``test`` (quick runs, tests); the labelled set is decoded whole (the draw is among its readable
    files) even when the pool comes from ``unlabelled``. ``skip_bad``: leave undecodable files out
    instead of raising.
    ``progress``: a progress bar while decoding large folders.
    """
    val = _section(val, HoldOut, "data.val")
    ood = _section(ood, OODFolder, "data.ood")
    check_semi_options(strong, ood.fraction if ood is not None else 0.0, "ood.fraction")
    if labels_per_class < 1 or (max_per_class is not None and max_per_class < 1):
        raise DataError(
            f"labels_per_class and max_per_class must be >= 1, got {labels_per_class}, {max_per_class}"
        )
    if val is None and test is None:
        raise DataError(
            "semi_folder needs an evaluation split: val: {last_per_class: N} or {fraction: F} (carved "
            "from the labelled folder) or test: PATH (an ImageFolder or CIFAR folder with the same classes)"
        )
    skipping = SkipBadFiles(skip_bad)
    train = read_labelled(
        labelled, "train", image_size, skipping, max_per_class, progress, "data.labelled", holdout=val
    )
    is_val = train.held_out
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
        tested = read_labelled(
            test, "test", image_size, skipping, max_per_class, progress, "data.test", classes=train.classes
        )
        eval_images, eval_labels = tested.images, tested.labels
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
            "val_split": val.describe(train.source) if val is not None else None,
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
