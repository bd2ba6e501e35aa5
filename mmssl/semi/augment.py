"""Batched weak / strong image augmentation for semi-supervised training (FixMatch's views).

Per-sample ``transforms.v2`` pipelines cost milliseconds per image on a small CPU; a FixMatch step
augments ``(1 + 2 mu) B`` images, so here every op is one tensor expression over a whole batch
``[N, 3, H, W]`` (float in [0, 1]), run by the trainer as ``DataBundle.batch_transform`` on the
training device. Randomness comes from torch's global RNG of that device.

* weak (FixMatch sec. 2.3): horizontal flip with p = 0.5 and a translation by up to 12.5% of the
  side, reflect-padded (``RandomCrop(size, padding=size/8, padding_mode="reflect")``).
* strong: weak, then RandAugment (Cubuk et al. 2020) as FixMatch uses it: ``num_ops`` operations
  drawn uniformly per sample, each at a magnitude drawn uniformly from 1..10 (of 10), then Cutout
  (a grey square of side ``U(0, cutout) * size``, at a uniform centre, clipped to the image).

RandAugment operations and their ranges at the top magnitude follow torchvision's ``RandAugment``
(signed ones get a random sign): identity; shear x / y 0.3; translate x / y 150/331 of the side;
rotate 30 degrees; brightness, colour (saturation), contrast, sharpness factors ``1 +- 0.9``;
posterize to 8..4 bits; solarize above a threshold 1..0; autocontrast; equalize. Geometric ops
fill uncovered pixels with grey 0.5 (FixMatch's 128), nearest-neighbour resampling.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmssl.modalities.image.batch_views import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    hflip,
    normalize,
    to_float,
)
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD

FILL = 0.5
OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
MAX_MAGNITUDE = 10


def _signed(level: Tensor) -> Tensor:
    """``level`` with a random sign per sample."""
    sign = torch.where(torch.rand(level.shape, device=level.device) < 0.5, -1.0, 1.0)
    return level * sign


# ------------------------------------------------------------------------------------------ weak


def random_translate(images: Tensor, max_shift: int) -> Tensor:
    """Reflect-pad by ``max_shift`` and crop back at a uniform offset per sample (a random translation)."""
    if max_shift <= 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (max_shift, max_shift, max_shift, max_shift), mode="reflect")
    oy = torch.randint(0, 2 * max_shift + 1, (n,), device=images.device)
    ox = torch.randint(0, 2 * max_shift + 1, (n,), device=images.device)
    rows = (oy[:, None] + torch.arange(h, device=images.device))[:, :, None]  # [N, H, 1]
    cols = (ox[:, None] + torch.arange(w, device=images.device))[:, None, :]  # [N, 1, W]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def weak_augment(images: Tensor) -> Tensor:
    """Flip (p = 0.5) and translate by up to 12.5% of the side, on float images ``[N, 3, H, W]``."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return random_translate(hflip(images, flip), max(1, round(0.125 * images.shape[-1])))


# ------------------------------------------------------------------------------------------ strong


def affine(images: Tensor, matrices: Tensor) -> Tensor:
    """Warp each image by a 2x3 matrix in normalised coordinates (output -> input), grey fill."""
    grid = F.affine_grid(matrices, list(images.shape), align_corners=False)
    ones = torch.ones_like(images[:, :1])
    warped = F.grid_sample(torch.cat([images, ones], 1), grid, mode="nearest", align_corners=False)
    inside = warped[:, -1:]
    return warped[:, :-1] * inside + FILL * (1.0 - inside)


def geometric_matrices(op: str, level: Tensor) -> Tensor:
    """``[N, 2, 3]`` sampling matrices for a geometric op at ``level`` in [0, 1] (signed inside)."""
    n = level.shape[0]
    m = torch.zeros(n, 2, 3, device=level.device)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    v = _signed(level)
    if op == "shear_x":
        m[:, 0, 1] = 0.3 * v
    elif op == "shear_y":
        m[:, 1, 0] = 0.3 * v
    elif op == "translate_x":
        m[:, 0, 2] = 2.0 * (150.0 / 331.0) * v  # normalised coordinates span 2
    elif op == "translate_y":
        m[:, 1, 2] = 2.0 * (150.0 / 331.0) * v
    elif op == "rotate":
        theta = torch.deg2rad(30.0 * v)
        m[:, 0, 0], m[:, 0, 1] = torch.cos(theta), -torch.sin(theta)
        m[:, 1, 0], m[:, 1, 1] = torch.sin(theta), torch.cos(theta)
    else:
        raise ValueError(f"not a geometric op: {op}")
    return m


def sharpness(images: Tensor, factor: Tensor) -> Tensor:
    """PIL / torchvision sharpness: blend with the ``[[1,1,1],[1,5,1],[1,1,1]] / 13`` smoothed image
    (border pixels keep their value)."""
    c = images.shape[1]
    kernel = torch.ones(3, 3, device=images.device, dtype=images.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = images.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(images, kernel, groups=c)
    f = factor.view(-1, 1, 1, 1)
    return (images * f + smooth * (1.0 - f)).clamp(0.0, 1.0)


def posterize(images: Tensor, bits: Tensor) -> Tensor:
    """Keep the top ``bits`` (per sample, 4..8) of every 8-bit channel value."""
    step = (2.0 ** (8 - bits.float())).view(-1, 1, 1, 1)
    levels = (images * 255.0).round()
    return torch.floor(levels / step) * step / 255.0


def solarize_above(images: Tensor, threshold: Tensor) -> Tensor:
    """``x -> 1 - x`` where ``x >= threshold`` (per-sample threshold)."""
    return torch.where(images >= threshold.view(-1, 1, 1, 1), 1.0 - images, images)


def autocontrast(images: Tensor) -> Tensor:
    """Stretch every channel to [0, 1] (unchanged where it is constant)."""
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    scale = torch.where(high > low, 1.0 / (high - low).clamp_min(1e-12), torch.ones_like(high))
    return torch.where(high > low, (images - low) * scale, images).clamp(0.0, 1.0)


def equalize(images: Tensor) -> Tensor:
    """Per-channel histogram equalisation on 8-bit levels, PIL's rule (as torchvision's ``equalize``).

    With ``h`` the 256-bin histogram of a channel and ``step = (sum(h) - h[last used level]) // 255``,
    level ``v`` maps to ``min(255, (step // 2 + sum_{u < v} h[u]) // step)``; a channel with
    ``step = 0`` (nearly constant) is left unchanged.
    """
    n, c, h, w = images.shape
    levels = (images * 255.0).round().long().clamp(0, 255).reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=images.device, dtype=torch.long)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    last = hist.gather(1, levels.amax(dim=1, keepdim=True))
    step = (h * w - last) // 255  # [n*c, 1]
    before = hist.cumsum(dim=1) - hist
    safe = step.clamp_min(1)
    lut = ((safe // 2 + before) // safe).clamp_max(255)
    mapped = lut.gather(1, levels).float() / 255.0
    out = torch.where(step > 0, mapped, levels.float() / 255.0)
    return out.reshape(n, c, h, w)


def apply_op(op: str, images: Tensor, magnitude: Tensor) -> Tensor:
    """One RandAugment op on ``images`` ``[n, 3, H, W]`` at per-sample ``magnitude`` in 0..10."""
    level = magnitude.float() / MAX_MAGNITUDE
    if op == "identity":
        return images
    if op in GEOMETRIC:
        return affine(images, geometric_matrices(op, level))
    if op == "brightness":
        return adjust_brightness(images, 1.0 + 0.9 * _signed(level))
    if op == "color":
        return adjust_saturation(images, 1.0 + 0.9 * _signed(level))
    if op == "contrast":
        return adjust_contrast(images, 1.0 + 0.9 * _signed(level))
    if op == "sharpness":
        return sharpness(images, 1.0 + 0.9 * _signed(level))
    if op == "posterize":
        return posterize(images, 8 - (magnitude.float() * 4 / MAX_MAGNITUDE).round())
    if op == "solarize":
        return solarize_above(images, 1.0 - level)
    if op == "autocontrast":
        return autocontrast(images)
    if op == "equalize":
        return equalize(images)
    raise ValueError(f"unknown RandAugment op '{op}'")


def rand_augment(images: Tensor, num_ops: int = 2) -> Tensor:
    """``num_ops`` rounds; in each, every sample gets one op drawn uniformly from :data:`OPS` at a
    magnitude drawn uniformly from 1..10. Samples sharing an op are processed together."""
    x = images
    n = x.shape[0]
    for _ in range(num_ops):
        ops = torch.randint(len(OPS), (n,), device=x.device)
        mags = torch.randint(1, MAX_MAGNITUDE + 1, (n,), device=x.device)
        out = x.clone()
        for k, name in enumerate(OPS):
            idx = torch.nonzero(ops == k).squeeze(1)
            if idx.numel() and name != "identity":
                out[idx] = apply_op(name, x[idx], mags[idx])
        x = out
    return x


def cutout(images: Tensor, max_fraction: float = 0.5) -> Tensor:
    """Grey out one square per sample: side ``U(0, max_fraction) * size``, centre uniform, clipped."""
    if max_fraction <= 0:
        return images
    n, _, h, w = images.shape
    dev = images.device
    side = torch.rand(n, device=dev) * max_fraction * min(h, w)
    cy, cx = torch.rand(n, device=dev) * h, torch.rand(n, device=dev) * w
    ys = torch.arange(h, device=dev).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=dev).view(1, 1, w) + 0.5
    half = (side / 2).view(n, 1, 1)
    inside = ((ys - cy.view(n, 1, 1)).abs() < half) & ((xs - cx.view(n, 1, 1)).abs() < half)
    return torch.where(inside.unsqueeze(1), torch.full_like(images, FILL), images)


def strong_augment(images: Tensor, num_ops: int = 2, cutout_fraction: float = 0.5) -> Tensor:
    """Weak augmentation, RandAugment, Cutout (float images ``[N, 3, H, W]`` in [0, 1])."""
    return cutout(rand_augment(weak_augment(images), num_ops), cutout_fraction)


# ------------------------------------------------------------------------------------------ batch


class SemiBatchViews:
    """``DataBundle.batch_transform`` of ``semi_shapes``: uint8 images in, normalised views out.

    In: ``{"x_l": uint8 [B, 3, H, W], "u": uint8 [B, mu, 3, H, W], ...}``. Out: ``x_l`` (weak view),
    ``u_weak`` and, unless ``strong == "none"``, ``u_strong`` ([B, mu, 3, H, W]: RandAugment + Cutout
    for ``randaugment``, an independent weak view for ``weak``); ``u`` is dropped, other keys pass.
    """

    def __init__(self, strong: str = "randaugment", num_ops: int = 2, cutout_fraction: float = 0.5) -> None:
        if strong not in ("randaugment", "weak", "none"):
            raise ValueError(f"strong must be randaugment, weak or none, got '{strong}'")
        self.strong, self.num_ops, self.cutout_fraction = strong, num_ops, cutout_fraction

    def _norm(self, x: Tensor) -> Tensor:
        return normalize(x, IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if k != "u"}
        out["x_l"] = self._norm(weak_augment(to_float(batch["x_l"])))
        u = batch["u"]
        flat = to_float(u.flatten(0, 1))
        out["u_weak"] = self._norm(weak_augment(flat)).view(*u.shape)
        if self.strong == "randaugment":
            strong = strong_augment(flat, self.num_ops, self.cutout_fraction)
            out["u_strong"] = self._norm(strong).view(*u.shape)
        elif self.strong == "weak":
            out["u_strong"] = self._norm(weak_augment(flat)).view(*u.shape)
        return out

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(strong={self.strong}, num_ops={self.num_ops}, cutout={self.cutout_fraction})"
