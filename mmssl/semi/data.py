"""Semi-supervised data: N labels per class, the rest an unlabelled pool, weak and strong views.

``semi_shapes`` builds, from ``procedural_shapes``' train split, a labelled set of ``labels_per_class``
images per class and an unlabelled pool of all other train images (labels withheld from the method).
Optionally a fraction of the pool is replaced by images from another domain (``ood_kind``), marked
for reporting only.

A training item pairs one labelled image with ``mu`` unlabelled ones (FixMatch's unlabelled ratio),
as uint8 images; the bundle's ``batch_transform`` (:class:`~mmssl.semi.augment.SemiBatchViews`) makes
the views of a whole batch at once on the training device, so a method receives::

    {"x_l": weak view [B, 3, H, W], "y_l": [B],
     "u_weak": [B, mu, 3, H, W], "u_strong": [B, mu, 3, H, W], "u_index": [B, mu] (positions in the pool)}

An epoch covers the unlabelled pool once (``len = pool // mu``; the pool is cut into fixed random
groups of ``mu``); the labelled image is drawn with replacement from the item's seeded RNG, so every
step sees ``batch_size`` labelled and ``mu * batch_size`` unlabelled images.

Views follow FixMatch (Sohn et al. 2020, sec. 2.3): weak = random horizontal flip and a random
translation of up to 12.5% (reflect-pad and crop); strong = weak + RandAugment (two random operations
at a random magnitude) + Cutout (a grey square of side up to ``cutout * size``); see
:mod:`mmssl.semi.augment`.

The bundle's :class:`~mmssl.semi.pool.UnlabelledPool` extra is what methods and evaluators need
beyond batches: the pool as a Dataset of ``{"input": eval view, "index": i}``, and, for reporting only,
which samples are out of domain (bool [pool]) and their true labels ([pool], -1 for out-of-domain).
Its ``stats`` count the split and the shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.data.source import data_source
from mmssl.errors import DataError
from mmssl.modalities.image.batch_views import normalize, to_float
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.procedural.shapes import SHAPE_CLASSES, ProceduralShapes
from mmssl.semi.augment import SemiBatchViews
from mmssl.semi.keys import U_INDEX, U_STRONG, U_WEAK, X_L, Y_L
from mmssl.semi.pool import UnlabelledPool

STRONG_VIEWS = ("randaugment", "weak", "none")
OOD_KINDS = ("noise", "unseen_classes")


# ------------------------------------------------------------------------------------------- views


def normalise_uint8(image: Tensor) -> Tensor:
    """The evaluation view of an image already at the training size: ``(x / 255 - mean) / std``.

    Equal to :func:`~mmssl.modalities.image.views.eval_transform` for such images, without the
    per-sample ``transforms.v2`` overhead (the whole pool is predicted at every phase boundary).
    """
    return normalize(to_float(image.unsqueeze(0)), IMAGENET_MEAN, IMAGENET_STD)[0]


# ---------------------------------------------------------------------------------------- datasets


class SemiTrainSet(Dataset):
    """Items ``{"x_l": uint8 [3, H, W], "y_l": int, "u": uint8 [mu, 3, H, W], "u_index": [mu]}``.

    The views are made per batch by :class:`~mmssl.semi.augment.SemiBatchViews` (the bundle's
    ``batch_transform``), which turns ``u`` into ``u_weak`` / ``u_strong``.

    Args:
        labelled: uint8 images ``[L, 3, H, W]``; labels: ``[L]``.
        unlabelled: uint8 images ``[U, 3, H, W]`` (labels never stored here).
        mu: unlabelled images per labelled one. seed: fixes the grouping of the pool into ``mu``-tuples.
    """

    def __init__(self, labelled: Tensor, labels: Tensor, unlabelled: Tensor, mu: int, seed: int = 0) -> None:
        if mu < 1:
            raise DataError(f"mu must be >= 1, got {mu}")
        if len(unlabelled) < mu:
            raise DataError(f"the unlabelled pool ({len(unlabelled)}) is smaller than mu={mu}")
        self.labelled, self.labels, self.unlabelled, self.mu = labelled, labels.long(), unlabelled, mu
        self.order = torch.randperm(len(unlabelled), generator=torch.Generator().manual_seed(seed + 1))

    def __len__(self) -> int:
        return len(self.unlabelled) // self.mu

    def __getitem__(self, index: int) -> dict[str, Any]:
        j = int(torch.randint(len(self.labelled), ()))  # seeded per (seed, epoch, index) by the trainer
        u_index = self.order[index * self.mu : (index + 1) * self.mu]
        return {
            "x_l": self.labelled[j],
            "y_l": int(self.labels[j]),
            # index_select, not advanced indexing: the latter costs ~20 ms here on a busy 2-core CPU.
            "u": self.unlabelled.index_select(0, u_index),
            "u_index": u_index.clone(),
        }


class TensorImages(Dataset):
    """uint8 images ``[N, 3, H, W]`` -> ``{"input": transform(img), "index": i}`` (plus ``"label"``)."""

    def __init__(self, images: Tensor, transform: Callable[[Tensor], Tensor], labels: Tensor | None = None):
        self.images, self.transform = images, transform
        self.labels = labels.long() if labels is not None else None
        self.targets: list[int] = self.labels.tolist() if self.labels is not None else []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input": self.transform(self.images[index]), "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item


# ------------------------------------------------------------------------------- splits and shifts


def split_labelled(
    labels: Tensor, per_class: int, seed: int = 0, keep_pool: bool = True
) -> tuple[Tensor, Tensor]:
    """``(labelled indices, unlabelled indices)``: ``per_class`` random indices of every class, the rest.

    One generator seeded with ``seed`` draws a permutation of each class in turn (classes in increasing
    order). ``keep_pool``: every class must keep at least one image for the pool (the pool is the rest);
    without it a class may be labelled entirely (the pool comes from elsewhere).
    """
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < per_class or (keep_pool and idx.numel() == per_class):
            raise DataError(f"class {c} has {idx.numel()} images; cannot label {per_class} and keep a pool")
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    labelled = torch.cat(chosen).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[labelled] = False
    return labelled, torch.nonzero(mask).flatten()


def noise_images(n: int, size: int, seed: int) -> Tensor:
    """``n`` uint8 images of smooth colour noise: a random 4x4 colour grid upsampled, plus pixel noise.

    A plausible "other camera" domain: natural-looking colour statistics but no shape or texture.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 4, 4)).astype(np.float32))
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    noisy = smooth + torch.from_numpy(rng.normal(0, 12, size=(n, 3, size, size)).astype(np.float32))
    return noisy.clamp(0, 255).round().to(torch.uint8)


def unseen_class_images(n: int, size: int, num_classes: int, seed: int, cache_dir: str | None) -> Tensor:
    """``n`` procedural images of the shape classes *not* in the first ``num_classes`` (``val`` split)."""
    extra = len(SHAPE_CLASSES) - num_classes
    if extra < 1:
        raise DataError(
            f"ood_kind=unseen_classes needs num_classes < {len(SHAPE_CLASSES)} (classes to leave out), "
            f"got {num_classes}"
        )
    per_class = math.ceil(n / extra)
    base = ProceduralShapes(
        per_class,
        image_size=size,
        num_classes=len(SHAPE_CLASSES),
        split="val",
        seed=seed,
        cache_dir=cache_dir,
    )
    idx = torch.nonzero(base.labels >= num_classes).flatten()[:n]
    return base.images[idx]


def check_semi_options(strong: str, ood_fraction: float, where: str = "ood_fraction") -> None:
    """The options every semi-supervised dataset shares: the strong view and the out-of-domain fraction."""
    if strong not in STRONG_VIEWS:
        raise DataError(f"strong must be one of {', '.join(STRONG_VIEWS)}, got '{strong}'")
    if not 0.0 <= ood_fraction < 1.0:
        raise DataError(f"{where} must be in [0, 1), got {ood_fraction}")


def replace_fraction(
    pool: Tensor, true_labels: Tensor | None, fraction: float, seed: int, make: Callable[[int], Tensor]
) -> tuple[Tensor, int]:
    """Replace ``round(fraction * len(pool))`` seeded positions of ``pool`` (in place) by ``make(n)``.

    Returns ``(is_ood bool [pool], n)``; ``true_labels`` (when given) is set to -1 at those positions.
    The positions are the first ``n`` of a permutation drawn with ``seed + 2``.
    """
    is_ood = torch.zeros(len(pool), dtype=torch.bool)
    n_ood = round(fraction * len(pool))
    if n_ood > 0:
        where = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + 2))[:n_ood]
        pool[where] = make(n_ood)
        is_ood[where] = True
        if true_labels is not None:
            true_labels[where] = -1
    return is_ood, n_ood


def semi_bundle(
    name: str,
    *,
    labelled: Tensor,
    labels: Tensor,
    pool: Tensor,
    test: Tensor,
    test_labels: Tensor,
    num_classes: int,
    mu: int,
    seed: int,
    strong: str,
    randaugment_ops: int,
    cutout: float,
    is_ood: Tensor | None,
    true_labels: Tensor | None,
    stats: dict[str, Any],
) -> DataBundle:
    """The bundle of every semi-supervised image dataset (see the module docstring), from uint8 images
    ``[N, 3, S, S]``: training items from ``labelled`` and ``pool``, ``eval_train`` = the labelled set,
    ``eval_test`` = ``test``, the :class:`~mmssl.semi.pool.UnlabelledPool` extra with the reporting-only
    ``is_ood`` / ``true_labels``."""
    return DataBundle(
        pretrain=SemiTrainSet(labelled, labels, pool, mu, seed),
        eval_train=TensorImages(labelled, normalise_uint8, labels),
        eval_test=TensorImages(test, normalise_uint8, test_labels),
        num_classes=num_classes,
        batch_transform=SemiBatchViews(strong, randaugment_ops, cutout),
        extras=(UnlabelledPool(TensorImages(pool, normalise_uint8), is_ood=is_ood, true_labels=true_labels),),
        name=name,
        stats=stats,
    )


# ---------------------------------------------------------------------------------------- builder


def semi_keys(options: Mapping[str, Any]) -> set[str]:
    """The batch keys of a semi-supervised dataset's items: ``u_strong`` unless ``strong`` is none."""
    return {X_L, Y_L, U_WEAK, U_INDEX} | ({U_STRONG} if options["strong"] != "none" else set())


@data_source(produces=semi_keys)
def semi_shapes(
    labels_per_class: int = 10,
    mu: int = 7,
    image_size: int = 32,
    num_classes: int = 10,
    train_per_class: int = 500,
    test_per_class: int = 100,
    strong: str = "randaugment",
    randaugment_ops: int = 2,
    cutout: float = 0.5,
    ood_fraction: float = 0.0,
    ood_kind: str = "noise",
    seed: int = 0,
    cache_dir: str | None = None,
) -> DataBundle:
    """Procedural shapes with ``labels_per_class`` labels per class; every other train image is unlabelled.

    ``mu``: unlabelled images per labelled one in a training item. ``strong``: what ``u_strong`` holds:
    ``randaugment`` (FixMatch's strong view), ``weak`` (a second, independent weak view, as Mean
    Teacher's two noisy copies) or ``none`` (no ``u_strong``: cheaper for methods that do not use it).
    ``ood_fraction`` of the pool is replaced by ``ood_kind`` images: ``noise`` (smooth colour noise) or
    ``unseen_classes`` (shape classes left out by ``num_classes``). ``eval_train`` is the labelled set
    only, ``eval_test`` the test split (deterministic evaluation transform). Real images:
    ``semi_folder`` (:mod:`mmssl.semi.folders`).
    """
    check_semi_options(strong, ood_fraction)
    if ood_kind not in OOD_KINDS:
        raise DataError(f"ood_kind must be one of {', '.join(OOD_KINDS)}, got '{ood_kind}'")
    common = dict(image_size=image_size, num_classes=num_classes, seed=seed, cache_dir=cache_dir)
    train = ProceduralShapes(train_per_class, split="train", **common)  # type: ignore[arg-type]
    test = ProceduralShapes(test_per_class, split="test", **common)  # type: ignore[arg-type]
    lab_idx, unl_idx = split_labelled(train.labels, labels_per_class, seed)

    pool = train.images[unl_idx].clone()
    true_labels = train.labels[unl_idx].clone()

    def make_ood(n: int) -> Tensor:
        if ood_kind == "noise":
            return noise_images(n, image_size, seed)
        return unseen_class_images(n, image_size, num_classes, seed, cache_dir)

    is_ood, n_ood = replace_fraction(pool, true_labels, ood_fraction, seed, make_ood)
    return semi_bundle(
        "semi_shapes",
        labelled=train.images[lab_idx],
        labels=train.labels[lab_idx],
        pool=pool,
        test=test.images,
        test_labels=test.labels,
        num_classes=num_classes,
        mu=mu,
        seed=seed,
        strong=strong,
        randaugment_ops=randaugment_ops,
        cutout=cutout,
        is_ood=is_ood,
        true_labels=true_labels,
        stats={
            "class_names": list(train.class_names),
            "image_size": image_size,
            "labels_per_class": labels_per_class,
            "num_labelled": len(lab_idx),
            "num_unlabelled": len(pool),
            "num_test": len(test),
            "mu": mu,
            "ood_fraction": ood_fraction,
            "ood_kind": ood_kind if n_ood > 0 else None,
            "num_ood": n_ood,
        },
    )
