"""Per-sample augmentation pipelines ("views") for image self-supervised learning.

Each view is an :class:`AugmentationView`: a ``torchvision.transforms.v2.Compose`` built from one
:class:`~mmssl.modalities.image.view_spec.ViewSpec` (the numbers of the SimCLR / MoCo v2 / BYOL / MAE
presets live there, shared with the batched pipelines of :mod:`batch_views`). A two-view transform is a
:class:`~mmssl.data.MultiViewTransform` of per-view pipelines (:func:`sample_views`).

Every pipeline accepts either a PIL image or a ``uint8`` tensor ``[3, H, W]``; it returns a plain
``float32`` tensor ``[3, size, size]``, normalised per channel as ``(x / 255 - mean) / std``.

All randomness comes from torch's global RNG (``transforms.v2`` draws crop boxes, flip/apply
coins, jitter factors and order, and blur sigmas with ``torch.rand``/``torch.randint``), so
``torch.manual_seed(s)`` makes a sample's views reproducible, and DataLoader workers, which torch
seeds per worker, get distinct streams without extra work.

Normalisation constants: we use the ImageNet channel statistics
(mean 0.485/0.456/0.406, std 0.229/0.224/0.225) for every image dataset. They are the convention
of torchvision, SimCLR, MoCo and BYOL code, and are close to CIFAR-10's own statistics
(mean 0.491/0.482/0.447, std 0.247/0.243/0.262); one fixed pair keeps encoders trained on one image
dataset usable on another without re-normalising.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from mmssl.data.multiview import MultiViewTransform
from mmssl.modalities.image.view_spec import (
    SINGLE_VIEW_NAMES,
    SMALL_IMAGE_SIZE,
    VIEW_NAMES,
    ViewOptions,
    ViewSpec,
    blur_kernel_size,
    resolve_views,
)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class AugmentationView(v2.Compose):
    """crop -> flip -> colour distortion -> blur -> solarize -> normalise, per sample, from a
    :class:`ViewSpec` (kept as ``spec``).

    Colour operations run on float images in [0, 1] (no re-quantisation between the jitter steps). A
    step whose probability is 0 is left out entirely rather than wrapped in a no-op coin flip, so it
    draws nothing from the RNG.
    """

    def __init__(
        self,
        size: int,
        spec: ViewSpec,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        steps: list[Any] = [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=spec.crop_scale, ratio=spec.crop_ratio, antialias=True),
        ]
        if spec.flip_prob > 0:
            steps.append(v2.RandomHorizontalFlip(p=spec.flip_prob))
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if spec.jitter_prob > 0 and any(j > 0 for j in spec.jitter):
            b, c, s, h = spec.jitter
            steps.append(v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=spec.jitter_prob))
        if spec.grayscale_prob > 0:
            steps.append(v2.RandomGrayscale(p=spec.grayscale_prob))
        if spec.blur_prob > 0:
            blur = v2.GaussianBlur(blur_kernel_size(size), sigma=spec.blur_sigma)
            steps.append(v2.RandomApply([blur], p=spec.blur_prob))
        if spec.solarize_prob > 0:
            # BYOL: x -> x if x < 0.5 else 1 - x, on pixel values in [0, 1].
            steps.append(v2.RandomSolarize(threshold=0.5, p=spec.solarize_prob))
        steps += [v2.Normalize(mean=list(mean), std=list(std)), v2.ToPureTensor()]
        super().__init__(steps)
        self.size, self.spec = size, spec


def sample_views(specs: Sequence[ViewSpec], size: int) -> MultiViewTransform:
    """One :class:`AugmentationView` per spec, as a :class:`MultiViewTransform` (views in spec order;
    equal specs share one pipeline, which draws afresh for each view). ``size``: the output side of
    specs that do not set their own (multi-crop's small views do)."""
    built: dict[ViewSpec, AugmentationView] = {}
    for spec in specs:
        if spec not in built:
            built[spec] = AugmentationView(spec.output_size(size), spec)
    return MultiViewTransform([built[spec] for spec in specs])


def build_views(name: str, size: int, options: ViewOptions | None = None) -> MultiViewTransform:
    """The two-view transform of a preset in :data:`VIEW_NAMES` (``"simclr"``, ``"moco_v2"``,
    ``"byol"``) for ``size`` px outputs, with the recipe's ``options`` (see :func:`resolve_views`)."""
    if name not in VIEW_NAMES:
        raise ValueError(f"unknown view recipe '{name}'; available: {', '.join(VIEW_NAMES)}")
    return sample_views(resolve_views(name, size, options), size)


def build_single_view(name: str, size: int, options: ViewOptions | None = None) -> AugmentationView:
    """The one-image transform of a preset in :data:`SINGLE_VIEW_NAMES` (``"mae"``)."""
    if name not in SINGLE_VIEW_NAMES:
        raise ValueError(f"unknown single-view recipe '{name}'; available: {', '.join(SINGLE_VIEW_NAMES)}")
    (spec,) = resolve_views(name, size, options)
    return AugmentationView(size, spec)


def eval_transform(
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Deterministic evaluation transform: resize the shorter side to ``size``, centre-crop
    ``size x size``, scale to [0, 1], normalise. Images already ``size x size`` pass unchanged
    apart from the dtype and normalisation."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
            v2.ToPureTensor(),
        ]
    )


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SINGLE_VIEW_NAMES",
    "SMALL_IMAGE_SIZE",
    "VIEW_NAMES",
    "AugmentationView",
    "blur_kernel_size",
    "build_single_view",
    "build_views",
    "eval_transform",
    "sample_views",
]
