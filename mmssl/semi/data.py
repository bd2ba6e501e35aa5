"""Semi-supervised data: N labels per class, the rest an unlabelled pool, weak and strong views.

``semi_shapes`` builds, from ``procedural_shapes``' train split, a labelled set of ``labels_per_class``
images per class and an unlabelled pool of all other train images (labels withheld from the method).
Optionally a fraction of the pool is replaced by images from another domain (``ood_kind``), marked in
``info`` for reporting only.

A training item pairs one labelled image with ``mu`` unlabelled ones (FixMatch's unlabelled ratio)::

    {"x_l": weak view [3, H, W], "y_l": int,
     "u_weak": [mu, 3, H, W], "u_strong": [mu, 3, H, W], "u_index": [mu] (positions in the pool)}

An epoch covers the unlabelled pool once (``len = pool // mu``; the pool is cut into fixed random
groups of ``mu``); the labelled image is drawn with replacement from the item's seeded RNG, so every
step sees ``batch_size`` labelled and ``mu * batch_size`` unlabelled images.

Views follow FixMatch (Sohn et al. 2020, sec. 2.3): weak = random horizontal flip and a random
translation of up to 12.5% (reflect-pad and crop); strong = weak + RandAugment (two random operations
at a random magnitude) + Cutout (a grey square of side up to ``cutout * size``).

``info`` carries what the methods and evaluators need beyond the contract:
``unlabelled_pool`` (a Dataset of ``{"input": eval view, "index": i}``), ``unlabelled_is_ood`` (bool
[pool]) and ``unlabelled_true_labels`` ([pool], -1 for out-of-domain; for reporting only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmssl.data import DataBundle
from mmssl.errors import DataError
from mmssl.modalities.image.data import SHAPE_CLASSES, ProceduralShapes
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from mmssl.registry import DATASETS

STRONG_VIEWS = ("randaugment", "weak", "none")
OOD_KINDS = ("noise", "unseen_classes")


# ------------------------------------------------------------------------------------------- views


class RandomMagnitudeRandAugment(nn.Module):
    """RandAugment whose magnitude is drawn uniformly from ``1..max_magnitude`` on every call.

    FixMatch's RandAugment variant samples the magnitude at random instead of tuning it; torchvision's
    ``RandAugment`` has a fixed magnitude, so one instance per magnitude is kept and one is picked with
    torch's RNG (reproducible under the trainer's per-sample seeding).
    """

    def __init__(self, num_ops: int = 2, max_magnitude: int = 10) -> None:
        super().__init__()
        self.ops = nn.ModuleList(
            v2.RandAugment(num_ops=num_ops, magnitude=m, num_magnitude_bins=max_magnitude + 1)
            for m in range(1, max_magnitude + 1)
        )

    def forward(self, img: Any) -> Any:
        return self.ops[int(torch.randint(len(self.ops), ()))](img)


def weak_view(size: int) -> v2.Compose:
    """FixMatch's weak augmentation: flip (p=0.5) and translation up to 12.5% (reflect padding)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomCrop(size, padding=max(1, round(0.125 * size)), padding_mode="reflect"),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
            v2.ToPureTensor(),
        ]
    )


def strong_view(size: int, num_ops: int = 2, cutout: float = 0.5) -> v2.Compose:
    """FixMatch's strong augmentation: weak + RandAugment (random magnitude) + Cutout.

    Cutout: a square of side ``v * size``, ``v ~ U(0, cutout)`` in area terms approximated by
    ``RandomErasing`` with area fraction in ``[0.01, cutout^2]``, filled with grey (0.5 before
    normalisation, as FixMatch's 127).
    """
    steps: list[Any] = [
        v2.ToImage(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomCrop(size, padding=max(1, round(0.125 * size)), padding_mode="reflect"),
        RandomMagnitudeRandAugment(num_ops=num_ops),  # on uint8: posterize / equalize need it
        v2.ToDtype(torch.float32, scale=True),
    ]
    if cutout > 0:
        steps.append(
            v2.RandomErasing(p=1.0, scale=(min(0.01, cutout**2), cutout**2), ratio=(1.0, 1.0), value=0.5)
        )
    steps += [v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)), v2.ToPureTensor()]
    return v2.Compose(steps)


# ---------------------------------------------------------------------------------------- datasets


class SemiTrainSet(Dataset):
    """Items ``{"x_l", "y_l", "u_weak", "u_strong", "u_index"}`` (see the module docstring).

    Args:
        labelled: uint8 images ``[L, 3, H, W]``; labels: ``[L]``.
        unlabelled: uint8 images ``[U, 3, H, W]`` (labels never stored here).
        mu: unlabelled images per labelled one. weak / strong: per-image transforms (strong None:
            no ``u_strong`` key). seed: fixes the grouping of the pool into ``mu``-tuples.
    """

    def __init__(
        self,
        labelled: Tensor,
        labels: Tensor,
        unlabelled: Tensor,
        mu: int,
        weak: Callable[[Tensor], Tensor],
        strong: Callable[[Tensor], Tensor] | None,
        seed: int = 0,
    ) -> None:
        if mu < 1:
            raise DataError(f"mu must be >= 1, got {mu}")
        if len(unlabelled) < mu:
            raise DataError(f"the unlabelled pool ({len(unlabelled)}) is smaller than mu={mu}")
        self.labelled, self.labels, self.unlabelled = labelled, labels.long(), unlabelled
        self.mu, self.weak, self.strong = mu, weak, strong
        self.order = torch.randperm(len(unlabelled), generator=torch.Generator().manual_seed(seed + 1))

    def __len__(self) -> int:
        return len(self.unlabelled) // self.mu

    def __getitem__(self, index: int) -> dict[str, Any]:
        j = int(torch.randint(len(self.labelled), ()))  # seeded per (seed, epoch, index) by the trainer
        u_index = self.order[index * self.mu : (index + 1) * self.mu]
        u_imgs = [self.unlabelled[i] for i in u_index]
        item = {
            "x_l": self.weak(self.labelled[j]),
            "y_l": int(self.labels[j]),
            "u_weak": torch.stack([self.weak(u) for u in u_imgs]),
            "u_index": u_index.clone(),
        }
        if self.strong is not None:
            item["u_strong"] = torch.stack([self.strong(u) for u in u_imgs])
        return item


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


def split_labelled(labels: Tensor, per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(labelled indices, unlabelled indices)``: ``per_class`` random indices of every class, the rest."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() <= per_class:
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


def unseen_class_images(
    n: int, size: int, num_classes: int, seed: int, cache_dir: str | None
) -> Tensor:
    """``n`` procedural images of the shape classes *not* in the first ``num_classes`` (``val`` split)."""
    extra = len(SHAPE_CLASSES) - num_classes
    if extra < 1:
        raise DataError(
            f"ood_kind=unseen_classes needs num_classes < {len(SHAPE_CLASSES)} (classes to leave out), "
            f"got {num_classes}"
        )
    per_class = math.ceil(n / extra)
    base = ProceduralShapes(
        per_class, image_size=size, num_classes=len(SHAPE_CLASSES), split="val", seed=seed, cache_dir=cache_dir
    )
    idx = torch.nonzero(base.labels >= num_classes).flatten()[:n]
    return base.images[idx]


# ---------------------------------------------------------------------------------------- builder


@DATASETS.register("semi_shapes", modality="image")
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
    only, ``eval_test`` the test split (deterministic evaluation transform).
    """
    if strong not in STRONG_VIEWS:
        raise DataError(f"strong must be one of {', '.join(STRONG_VIEWS)}, got '{strong}'")
    if ood_kind not in OOD_KINDS:
        raise DataError(f"ood_kind must be one of {', '.join(OOD_KINDS)}, got '{ood_kind}'")
    if not 0.0 <= ood_fraction < 1.0:
        raise DataError(f"ood_fraction must be in [0, 1), got {ood_fraction}")
    common = dict(image_size=image_size, num_classes=num_classes, seed=seed, cache_dir=cache_dir)
    train = ProceduralShapes(train_per_class, split="train", **common)  # type: ignore[arg-type]
    test = ProceduralShapes(test_per_class, split="test", **common)  # type: ignore[arg-type]
    lab_idx, unl_idx = split_labelled(train.labels, labels_per_class, seed)

    pool = train.images[unl_idx].clone()
    true_labels = train.labels[unl_idx].clone()
    is_ood = torch.zeros(len(pool), dtype=torch.bool)
    n_ood = round(ood_fraction * len(pool))
    if n_ood > 0:
        where = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + 2))[:n_ood]
        if ood_kind == "noise":
            pool[where] = noise_images(n_ood, image_size, seed)
        else:
            pool[where] = unseen_class_images(n_ood, image_size, num_classes, seed, cache_dir)
        is_ood[where] = True
        true_labels[where] = -1

    evaluation = eval_transform(image_size)
    strong_tf = {
        "randaugment": strong_view(image_size, randaugment_ops, cutout),
        "weak": weak_view(image_size),
        "none": None,
    }[strong]
    labelled_images, labels = train.images[lab_idx], train.labels[lab_idx]
    return DataBundle(
        pretrain=SemiTrainSet(labelled_images, labels, pool, mu, weak_view(image_size), strong_tf, seed),
        eval_train=TensorImages(labelled_images, evaluation, labels),
        eval_test=TensorImages(test.images, evaluation, test.labels),
        num_classes=num_classes,
        info={
            "modality": "image",
            "dataset": "semi_shapes",
            "class_names": train.class_names,
            "image_size": image_size,
            "labels_per_class": labels_per_class,
            "num_labelled": len(lab_idx),
            "num_unlabelled": len(pool),
            "num_test": len(test),
            "mu": mu,
            "labelled_indices": lab_idx,
            "unlabelled_pool": TensorImages(pool, evaluation),
            "unlabelled_is_ood": is_ood,  # reporting only: methods must not read it
            "unlabelled_true_labels": true_labels,  # reporting only (-1: out of domain)
            "ood_fraction": ood_fraction,
            "ood_kind": ood_kind if n_ood > 0 else None,
        },
    )
