"""Augmentation pipelines ("views") for image self-supervised learning.

Every pipeline is a ``torchvision.transforms.v2.Compose`` and accepts either a PIL image or a
``uint8`` tensor ``[3, H, W]``; it returns a plain ``float32`` tensor ``[3, size, size]``,
normalised per channel as ``(x / 255 - mean) / std``.

All randomness comes from torch's global RNG (``transforms.v2`` draws crop boxes, flip/apply
coins, jitter factors and order, and blur sigmas with ``torch.rand``/``torch.randint``), so
``torch.manual_seed(s)`` makes a sample's views reproducible, and DataLoader workers, which torch
seeds per worker, get distinct streams without extra work.

Normalisation constants: we use the ImageNet channel statistics
(mean 0.485/0.456/0.406, std 0.229/0.224/0.225) for every image dataset. They are the convention
of torchvision, SimCLR, MoCo and BYOL code, and are close to CIFAR-10's own statistics
(mean 0.491/0.482/0.447, std 0.247/0.243/0.262); one fixed pair keeps encoders trained on one image
dataset usable on another without re-normalising.

Recipes (per view; jitter = brightness, contrast, saturation, hue):

- SimCLR:  crop area 0.08-1, jitter (0.8s, 0.8s, 0.8s, 0.2s) p=0.8, grayscale p=0.2, blur p=0.5.
- MoCo v2: crop area 0.2-1, jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, blur p=0.5.
- BYOL:    crop area 0.08-1, jitter (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2,
  blur p=1.0 / 0.1 and solarize p=0.0 / 0.2 for view 1 / view 2.

All use a horizontal flip with p=0.5.
Gaussian blur uses sigma ~ U[0.1, 2.0] and a kernel of about 10% of the image side (odd).
For small images (``size <= 32``) SimCLR's CIFAR-10 recipe, and solo-learn's CIFAR recipes for
MoCo v2+ and BYOL, drop the blur: at 32 px a 3-pixel blur destroys most of the signal.
``build_views`` follows them unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

VIEW_NAMES: tuple[str, ...] = ("simclr", "moco_v2", "byol")
# Recipes giving one augmented image per sample (``{"image": ...}`` items), e.g. for masked modelling.
SINGLE_VIEW_NAMES: tuple[str, ...] = ("mae",)

# At or below this side length the two-view recipes switch Gaussian blur off (see module docstring).
SMALL_IMAGE_SIZE = 32


def blur_kernel_size(size: int) -> int:
    """About 10% of the image side, made odd, at least 3 (SimCLR appendix A).

    As SimCLR's code: ``radius = (size // 10) // 2``, ``kernel = 2 * radius + 1`` (23 at 224 px).
    """
    return max(3, 2 * ((size // 10) // 2) + 1)


def augmentation_view(
    size: int,
    *,
    crop_scale: Sequence[float] = (0.08, 1.0),
    flip_prob: float = 0.5,
    jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
    jitter_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    blur_prob: float = 0.0,
    blur_sigma: Sequence[float] = (0.1, 2.0),
    solarize_prob: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The generic crop -> flip -> colour distortion -> blur -> solarize pipeline all recipes share.

    ``jitter`` is (brightness, contrast, saturation, hue) as in ``ColorJitter``; a probability of 0
    leaves the step out entirely rather than wrapping it in a no-op coin flip.
    """
    steps: list[Any] = [
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True),
    ]
    if flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=flip_prob))
    # Colour operations run on float images in [0, 1]: no re-quantisation between the jitter steps.
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if jitter_prob > 0 and any(j > 0 for j in jitter):
        b, c, s, h = jitter
        steps.append(v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=jitter_prob))
    if grayscale_prob > 0:
        steps.append(v2.RandomGrayscale(p=grayscale_prob))
    if blur_prob > 0:
        blur = v2.GaussianBlur(blur_kernel_size(size), sigma=tuple(blur_sigma))
        steps.append(v2.RandomApply([blur], p=blur_prob))
    if solarize_prob > 0:
        # BYOL: x -> x if x < 0.5 else 1 - x, on pixel values in [0, 1].
        steps.append(v2.RandomSolarize(threshold=0.5, p=solarize_prob))
    steps += [v2.Normalize(mean=list(mean), std=list(std)), v2.ToPureTensor()]
    return v2.Compose(steps)


def simclr_view(
    size: int,
    crop_scale: Sequence[float] = (0.08, 1.0),
    jitter_strength: float = 1.0,
    blur_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """SimCLR (Chen et al., 2020, appendix A): crop, flip, jitter (0.8s,0.8s,0.8s,0.2s) p=0.8,
    grayscale p=0.2, Gaussian blur sigma in [0.1, 2] with probability ``blur_prob``.

    ``jitter_strength`` is the paper's colour-distortion strength ``s`` (1.0 on ImageNet,
    0.5 in its CIFAR-10 experiments).
    """
    s = jitter_strength
    return augmentation_view(
        size,
        crop_scale=crop_scale,
        jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
        jitter_prob=0.8,
        grayscale_prob=0.2,
        blur_prob=blur_prob,
        mean=mean,
        std=std,
    )


def moco_v2_view(
    size: int,
    crop_scale: Sequence[float] = (0.2, 1.0),
    blur_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """MoCo v2 "aug+" (Chen et al., 2020): crop 0.2-1, jitter (0.4,0.4,0.4,0.1) p=0.8,
    grayscale p=0.2, blur p=0.5, flip. Both views use the same pipeline."""
    return augmentation_view(
        size,
        crop_scale=crop_scale,
        jitter=(0.4, 0.4, 0.4, 0.1),
        jitter_prob=0.8,
        grayscale_prob=0.2,
        blur_prob=blur_prob,
        mean=mean,
        std=std,
    )


def byol_views(
    size: int,
    crop_scale: Sequence[float] = (0.08, 1.0),
    blur_probs: Sequence[float] = (1.0, 0.1),
    solarize_probs: Sequence[float] = (0.0, 0.2),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[v2.Compose, v2.Compose]:
    """BYOL's asymmetric pair (Grill et al., 2020, table 6): view 1 always blurred and never
    solarized, view 2 blurred with p=0.1 and solarized with p=0.2; both with crop 0.08-1, flip,
    jitter (0.4,0.4,0.2,0.1) p=0.8 and grayscale p=0.2."""
    return tuple(  # type: ignore[return-value]
        augmentation_view(
            size,
            crop_scale=crop_scale,
            jitter=(0.4, 0.4, 0.2, 0.1),
            jitter_prob=0.8,
            grayscale_prob=0.2,
            blur_prob=blur_p,
            solarize_prob=solar_p,
            mean=mean,
            std=std,
        )
        for blur_p, solar_p in zip(blur_probs, solarize_probs, strict=True)
    )


def mae_view(
    size: int,
    crop_scale: Sequence[float] = (0.2, 1.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """MAE (He et al., 2022, appendix A.1): random resized crop (area 0.2-1) and horizontal flip
    only; masking is the augmentation, colour distortion does not help."""
    return augmentation_view(
        size, crop_scale=crop_scale, jitter_prob=0.0, grayscale_prob=0.0, mean=mean, std=std
    )


def build_single_view(name: str, size: int) -> v2.Compose:
    """The one-image transform of a named recipe in :data:`SINGLE_VIEW_NAMES` (``"mae"``)."""
    if name == "mae":
        return mae_view(size)
    raise ValueError(f"unknown single-view recipe '{name}'; available: {', '.join(SINGLE_VIEW_NAMES)}")


class TwoViews:
    """``img -> [t1(img), t2(img)]``; with one transform both views use it (independent draws)."""

    def __init__(self, t1: Callable[[Any], torch.Tensor], t2: Callable[[Any], torch.Tensor] | None = None):
        self.t1 = t1
        self.t2 = t1 if t2 is None else t2

    def __call__(self, img: Any) -> list[torch.Tensor]:
        return [self.t1(img), self.t2(img)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n  t1={self.t1!r},\n  t2={self.t2!r})"


def build_views(name: str, size: int, blur: bool | None = None) -> TwoViews:
    """The two-view transform of a named recipe (``"simclr"``, ``"moco_v2"`` or ``"byol"``).

    ``blur=None`` switches Gaussian blur off for images of ``size <= 32`` (the CIFAR recipes) and
    keeps each recipe's own blur probabilities above that; ``True``/``False`` forces it.
    """
    use_blur = size > SMALL_IMAGE_SIZE if blur is None else blur
    if name == "simclr":
        return TwoViews(simclr_view(size, blur_prob=0.5 if use_blur else 0.0))
    if name == "moco_v2":
        return TwoViews(moco_v2_view(size, blur_prob=0.5 if use_blur else 0.0))
    if name == "byol":
        return TwoViews(*byol_views(size, blur_probs=(1.0, 0.1) if use_blur else (0.0, 0.0)))
    raise ValueError(f"unknown view recipe '{name}'; available: {', '.join(VIEW_NAMES)}")


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
