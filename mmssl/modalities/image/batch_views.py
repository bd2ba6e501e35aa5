"""Batched augmentation: the view presets of :mod:`view_spec`, applied to a whole batch at once.

Per-sample ``transforms.v2`` pipelines cost milliseconds per image, nearly all of it per-op Python
overhead, so on a small CPU they, not the model, bound SimCLR's throughput. Here every random
parameter of a batch (crop boxes, flip / jitter / grayscale / blur / solarize coins, jitter factors
and order, blur sigmas) is drawn in a few calls, and every op is one vectorised tensor expression over
``[B, 3, H, W]``, on whatever device the batch is on (the GPU in production: the trainer applies a
bundle's ``batch_transform`` after moving the batch there).

Randomness comes from torch's global RNG of the batch's device (``torch.rand(..., device=...)``),
in a fixed number of draws per batch, so ``torch.manual_seed`` makes a run reproducible and a
checkpointed RNG state (CPU and CUDA) makes a resumed run draw the same parameters.

Each op follows ``torchvision.transforms.v2.functional`` on float images in ``[0, 1]``
(tests compare them sample by sample):

- random resized crop: torchvision's box sampler (area fraction ``~ U[scale]``, log aspect ratio
  ``~ U[log 3/4, log 4/3]``, side lengths rounded, first of 10 tries that fits, else the central
  crop), all tries drawn at once; resampling with ``roi_align`` (bilinear, ``aligned=True``), which
  samples at the same points as ``resized_crop(..., antialias=False)``. Two documented differences:
  output pixels within half a source pixel of the crop edge interpolate with the pixel just outside
  the crop (torchvision clamps to the crop's edge pixel), and a crop larger than the output is
  averaged over ``ceil(crop / out)^2`` points per output pixel (a box antialias) instead of
  torchvision's separable antialias filter. Crops never exceed the output in this toolkit's batch
  pipelines (images are stored at the training size), so the latter does not arise there.
- colour jitter with probability p: factors ``b, c, s ~ U[max(0, 1 - x), 1 + x]``, hue
  ``~ U[-h, h]``, applied in a random order drawn per sample (a uniform permutation, as
  ``ColorJitter``), each op with torchvision's formula and clamping:
  brightness ``clamp(b x)``, contrast ``clamp(c x + (1 - c) mean(gray(x)))``,
  saturation ``clamp(s x + (1 - s) gray(x))``, hue: rotate H in HSV space by ``h`` turns.
- grayscale: ``0.2989 R + 0.587 G + 0.114 B`` (ITU-R 601-2, torchvision's weights), 3 channels.
- Gaussian blur: per-sample ``sigma ~ U[0.1, 2]``, kernel ``exp(-t^2 / 2 sigma^2)`` normalised,
  ``t = -(k-1)/2 .. (k-1)/2``, reflect padding; separable (one grouped conv per axis).
- solarize: ``x -> 1 - x`` where ``x >= 0.5``.
- normalise: ``(x - mean) / std`` with :data:`views.IMAGENET_MEAN` / :data:`views.IMAGENET_STD`.

One more difference from the per-sample pipelines: those crop the ``uint8`` image and round the
resized crop back to ``uint8`` before the colour ops; here the batch is converted to float first
and never re-quantised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from mmssl.data.keys import IMAGES_UINT8, VIEWS
from mmssl.modalities.image.view_spec import (
    VIEW_NAMES,
    ViewOptions,
    ViewSpec,
    blur_kernel_size,
    resolve_views,
)
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD

# Index of each colour op in a jitter order (as ColorJitter's fn_idx).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
GRAY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.587, 0.114)
CROP_TRIES = 10


def _per_sample(values: Tensor) -> Tensor:
    """``[B]`` -> ``[B, 1, 1, 1]``, to broadcast a per-sample value over an image batch."""
    return values.reshape(-1, 1, 1, 1)


def to_float(images: Tensor) -> Tensor:
    """``uint8`` in [0, 255] -> ``float32`` in [0, 1]; float batches are taken as already in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


# ---------------------------------------------------------------------------- geometry


def sample_crop_boxes(
    batch_size: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    device: torch.device | str | None = None,
    tries: int = CROP_TRIES,
) -> Tensor:
    """Crop boxes ``[B, 4]`` (top, left, height, width; int64) by torchvision's RandomResizedCrop rule.

    For each sample, ``tries`` candidates ``(w, h) = round(sqrt(A a r)), round(sqrt(A a / r))`` with
    ``a ~ U[scale]`` and ``log r ~ U[log ratio]`` are drawn at once; the first that fits the image is
    kept and placed uniformly, and a sample with none that fits gets torchvision's fallback, the
    largest central crop whose aspect ratio is clipped to ``ratio``.
    """
    area = height * width
    lo_r, hi_r = math.log(ratio[0]), math.log(ratio[1])
    target_area = area * torch.empty(batch_size, tries, device=device).uniform_(scale[0], scale[1])
    aspect = torch.exp(torch.empty(batch_size, tries, device=device).uniform_(lo_r, hi_r))
    w = torch.round(torch.sqrt(target_area * aspect)).long()
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    found = fits.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    # torchvision's fallback: the whole image, with its aspect ratio clipped into ``ratio``.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w0, h0 = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w0, h0 = int(round(height * max(ratio))), height
    else:
        w0, h0 = width, height
    w = torch.where(found, w, w0)
    h = torch.where(found, h, h0)

    # Uniform integer offsets, as torch.randint(0, height - h + 1); the fallback is centred.
    u = torch.rand(batch_size, 2, device=device)
    top = torch.minimum((u[:, 0] * (height - h + 1)).long(), height - h)
    left = torch.minimum((u[:, 1] * (width - w + 1)).long(), width - w)
    top = torch.where(found, top, (height - h0) // 2)
    left = torch.where(found, left, (width - w0) // 2)
    return torch.stack((top, left, h, w), dim=1)


def resized_crop(images: Tensor, crops: Tensor, size: int) -> Tensor:
    """Crop ``crops[i] = (top, left, height, width)`` of each image and resize it to ``size x size``.

    ``roi_align`` with ``aligned=True`` samples output pixel ``k`` of a crop at source coordinate
    ``left - 0.5 + (k + 0.5) * width / size`` (pixel centres at integers), exactly where
    ``F.interpolate(..., align_corners=False)`` samples the cropped image; see the module docstring
    for the two differences at crop edges and for crops larger than the output.
    """
    crops = crops.to(device=images.device, dtype=images.dtype)
    top, left, h, w = crops.unbind(dim=1)
    index = torch.arange(images.shape[0], device=images.device, dtype=images.dtype)
    boxes = torch.stack((index, left, top, left + w, top + h), dim=1)  # (batch index, x1, y1, x2, y2)
    # sampling_ratio=-1: ceil(crop / size) points per bin and axis, i.e. one point when upsampling.
    return roi_align(
        images, boxes, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )


def hflip(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror the samples where ``flip`` is true."""
    return torch.where(_per_sample(flip), images.flip(-1), images)


# ---------------------------------------------------------------------------- colour


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` as ``[B, 1, H, W]``."""
    r, g, b = images.unbind(dim=-3)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def _blend(images: Tensor, target: Tensor, factor: Tensor) -> Tensor:
    """``clamp(f x + (1 - f) t, 0, 1)`` with a per-sample factor (torchvision's ``_blend``)."""
    f = _per_sample(factor)
    return (images * f + target * (1.0 - f)).clamp_(0.0, 1.0)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """``clamp(b x)``: blend with black."""
    return (images * _per_sample(factor)).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean gray level (one scalar per sample)."""
    mean = rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's own grayscale version."""
    return _blend(images, rgb_to_grayscale(images), factor)


def adjust_hue(images: Tensor, factor: Tensor) -> Tensor:
    """Rotate the hue by ``factor[i]`` turns (in [-0.5, 0.5]), keeping HSV saturation and value.

    The RGB -> HSV -> RGB round trip of torchvision, folded into one expression: with
    ``v = max(R, G, B)``, chroma ``c = v - min(R, G, B)`` and the hue in sextants
    ``h6 = (G - B) / c``, ``2 + (B - R) / c`` or ``4 + (R - G) / c`` (the largest channel decides,
    R before G before B on ties), channel ``n`` (5 for R, 3 for G, 1 for B) of the result is
    ``v - c * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + h6 + 6 factor) mod 6``.
    Gray pixels (``c = 0``) stay unchanged.
    """
    r, g, b = images.unbind(dim=-3)
    value, low = images.amax(dim=-3), images.amin(dim=-3)
    chroma = value - low
    inv = 1.0 / torch.where(chroma > 0, chroma, torch.ones_like(chroma))  # any hue will do where c = 0
    h6 = torch.where(
        value == r,
        (g - b) * inv,
        torch.where(value == g, (b - r) * inv + 2.0, (r - g) * inv + 4.0),
    )
    h6 = h6 + 6.0 * factor.view(-1, 1, 1)
    n = torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).view(3, 1, 1)
    k = torch.remainder(n + h6.unsqueeze(-3), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return value.unsqueeze(-3) - chroma.unsqueeze(-3) * ramp


def color_jitter(images: Tensor, factors: Tensor, order: Tensor, apply: Tensor | None = None) -> Tensor:
    """Brightness, contrast, saturation and hue, in a per-sample order (``ColorJitter``).

    Args:
        images: float ``[B, 3, H, W]`` in [0, 1].
        factors: ``[B, 4]``: brightness, contrast, saturation factors and hue shift. A brightness /
            contrast / saturation factor of 1 is the identity; a hue shift of exactly 0 skips the
            hue op (``ColorJitter(hue=0)`` leaves it out).
        order: ``[B, 4]`` int, each row a permutation of (0, 1, 2, 3) = (B, C, S, H): the op applied
            at each position.
        apply: optional ``[B]`` bool; samples where it is false pass unchanged.

    Position by position, the three blend ops are one expression ``clamp(f x + (1 - f) t)`` whose
    factor and target are picked per sample: ``t = 0`` (brightness), ``mean(gray(x))`` (contrast),
    ``gray(x)`` (saturation); ``f = 1`` leaves a sample whose op at this position is hue (or that
    is not jittered) exactly unchanged. Hue runs only on the samples whose op at that position is
    hue, gathered by index (on GPU, one host sync per position).
    """
    bsz = images.shape[0]
    active = torch.ones(bsz, dtype=torch.bool, device=images.device) if apply is None else apply
    one = torch.ones_like(factors[:, 0])
    hue_on = active & (factors[:, HUE] != 0)
    x = images.clamp(0.0, 1.0)  # a copy, updated in place below; inputs are documented to be in [0, 1]
    for position in range(4):
        op = order[:, position]
        is_b, is_c, is_s = active & (op == BRIGHTNESS), active & (op == CONTRAST), active & (op == SATURATION)
        f = torch.where(is_b, factors[:, BRIGHTNESS], one)
        f = torch.where(is_c, factors[:, CONTRAST], f)
        f = _per_sample(torch.where(is_s, factors[:, SATURATION], f))
        gray = rgb_to_grayscale(x)
        mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
        # gray * 1 + mean * 0 = gray, gray * 0 + mean * 1 = mean, both 0 for brightness: exact targets.
        target = gray.mul_(_per_sample(is_s.to(x.dtype))).add_(mean * _per_sample(is_c.to(x.dtype)))
        x = x.mul_(f).add_(target.mul_(1.0 - f)).clamp_(0.0, 1.0)
        idx = torch.nonzero(hue_on & (op == HUE)).squeeze(1)
        if idx.numel() > 0:
            x.index_copy_(0, idx, adjust_hue(x.index_select(0, idx), factors[idx, HUE]))
    return x


def grayscale(images: Tensor, apply: Tensor) -> Tensor:
    """Replace the samples where ``apply`` is true by their luma, repeated over 3 channels."""
    return torch.where(_per_sample(apply), rgb_to_grayscale(images).expand_as(images), images)


# ---------------------------------------------------------------------------- blur, solarize, normalise


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """``[B, k]`` normalised 1-D Gaussian kernels ``exp(-t^2 / (2 sigma_i^2))``,
    ``t = -(k-1)/2, ..., (k-1)/2`` (normalised by a softmax over ``t``)."""
    t = torch.arange(kernel_size, device=sigma.device, dtype=sigma.dtype) - (kernel_size - 1) / 2
    logits = -0.5 * (t / sigma.unsqueeze(1)) ** 2
    return torch.softmax(logits, dim=1)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int, apply: Tensor | None = None) -> Tensor:
    """Per-sample Gaussian blur, reflect padding (as torchvision's ``gaussian_blur``).

    The 2-D kernel ``g g^T`` is separable: the reflect-padded batch, seen as one image with
    ``B * C`` channels, goes through a grouped horizontal then vertical convolution, one kernel
    per channel.
    """
    b, c, h, w = images.shape
    kernels = gaussian_kernels(sigma.to(images.dtype), kernel_size).repeat_interleave(c, dim=0)  # [B*C, k]
    pad = kernel_size // 2
    x = F.pad(images.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernels.view(b * c, 1, 1, kernel_size), groups=b * c)
    x = F.conv2d(x, kernels.view(b * c, 1, kernel_size, 1), groups=b * c)
    x = x.reshape(b, c, h, w)
    return x if apply is None else torch.where(_per_sample(apply), x, images)


def solarize(images: Tensor, apply: Tensor, threshold: float = 0.5) -> Tensor:
    """``x -> 1 - x`` where ``x >= threshold``, in the samples where ``apply`` is true."""
    return torch.where(_per_sample(apply) & (images >= threshold), 1.0 - images, images)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


# ---------------------------------------------------------------------------- one view


@dataclass
class ViewParams:
    """Every random choice of one view of a batch (all tensors on the batch's device).

    crops: int ``[B, 4]`` (top, left, height, width); flip, jitter, gray, blur, solarize: bool ``[B]``
    (whether the op applies); factors: ``[B, 4]`` (brightness, contrast, saturation, hue);
    order: int ``[B, 4]`` jitter order (see :func:`color_jitter`); sigma: ``[B]`` blur sigma.
    """

    crops: Tensor
    flip: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    gray: Tensor
    blur: Tensor
    sigma: Tensor
    solarize: Tensor

    def to(self, device: torch.device | str) -> ViewParams:
        return ViewParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _jitter_range(value: float, center: float, clip_at_zero: bool) -> tuple[float, float]:
    lo, hi = center - value, center + value
    return (max(lo, 0.0) if clip_at_zero else lo), hi


class BatchView:
    """One augmentation pipeline (crop -> flip -> jitter -> grayscale -> blur -> solarize -> normalise)
    applied to a batch with per-sample random parameters; the batched twin of
    :class:`views.AugmentationView`, built from the same :class:`ViewSpec` (kept as ``spec``).

    ``view(images)`` = ``view.apply(images, view.sample_params(B, H, W, images.device))``.
    Steps whose probability is 0 are skipped in :meth:`apply`, whatever the parameters say.
    """

    def __init__(
        self,
        size: int,
        spec: ViewSpec | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        spec = ViewSpec() if spec is None else spec
        self.size, self.spec = size, spec
        self.crop_scale = spec.crop_scale
        self.crop_ratio = spec.crop_ratio
        self.flip_prob = spec.flip_prob
        self.jitter = spec.jitter
        self.jitter_prob = spec.jitter_prob if any(j > 0 for j in self.jitter) else 0.0
        self.grayscale_prob = spec.grayscale_prob
        self.blur_prob = spec.blur_prob
        self.blur_sigma = spec.blur_sigma
        self.blur_kernel = blur_kernel_size(size)
        self.solarize_prob = spec.solarize_prob
        self.mean, self.std = tuple(mean), tuple(std)
        b, c, s, h = self.jitter
        self.factor_ranges = (
            _jitter_range(b, 1.0, True),
            _jitter_range(c, 1.0, True),
            _jitter_range(s, 1.0, True),
            _jitter_range(h, 0.0, False),
        )

    def sample_params(
        self, batch_size: int, height: int, width: int, device: torch.device | str | None = None
    ) -> ViewParams:
        """Draw every parameter of a batch from the global RNG of ``device`` (a fixed number of draws)."""
        crops = sample_crop_boxes(batch_size, height, width, self.crop_scale, self.crop_ratio, device)
        coins = torch.rand(batch_size, 5, device=device)
        lo = torch.tensor([r[0] for r in self.factor_ranges], device=device)
        hi = torch.tensor([r[1] for r in self.factor_ranges], device=device)
        factors = lo + (hi - lo) * torch.rand(batch_size, 4, device=device)
        # A uniform random permutation per sample: the ranks of 4 i.i.d. uniforms.
        order = torch.rand(batch_size, 4, device=device).argsort(dim=1)
        sigma_lo, sigma_hi = self.blur_sigma
        sigma = sigma_lo + (sigma_hi - sigma_lo) * torch.rand(batch_size, device=device)
        return ViewParams(
            crops=crops,
            flip=coins[:, 0] < self.flip_prob,
            jitter=coins[:, 1] < self.jitter_prob,
            factors=factors,
            order=order,
            gray=coins[:, 2] < self.grayscale_prob,
            blur=coins[:, 3] < self.blur_prob,
            sigma=sigma,
            solarize=coins[:, 4] < self.solarize_prob,
        )

    @torch.no_grad()
    def apply(self, images: Tensor, params: ViewParams) -> Tensor:
        """The view of ``images`` (``uint8`` or float in [0, 1], ``[B, 3, H, W]``) under ``params``;
        returns normalised ``float32`` ``[B, 3, size, size]``."""
        # Bilinear weights sum to 1 only up to rounding: clamp, so colour ops see [0, 1] exactly.
        x = resized_crop(to_float(images), params.crops, self.size).clamp_(0.0, 1.0)
        if self.flip_prob > 0:
            x = hflip(x, params.flip)
        if self.jitter_prob > 0:
            x = color_jitter(x, params.factors, params.order, params.jitter)
        if self.grayscale_prob > 0:
            x = grayscale(x, params.gray)
        if self.blur_prob > 0:
            x = gaussian_blur(x, params.sigma, self.blur_kernel, params.blur)
        if self.solarize_prob > 0:
            x = solarize(x, params.solarize)
        return normalize(x, self.mean, self.std)

    def __call__(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a batch [B, 3, H, W], got shape {tuple(images.shape)}")
        params = self.sample_params(images.shape[0], images.shape[2], images.shape[3], images.device)
        return self.apply(images, params)

    def __repr__(self) -> str:
        keys = ("size", "crop_scale", "flip_prob", "jitter", "jitter_prob", "grayscale_prob")
        keys += ("blur_prob", "blur_kernel", "solarize_prob")
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)}' for k in keys)})"


class BatchViews:
    """Training-batch transform ``{"images": [B, 3, H, W], ...} -> {"views": [v1, v2, ...], ...}``.

    One :class:`BatchView` per output view, applied in order (the same object twice: independent
    draws), as :class:`~mmssl.data.MultiViewTransform` per sample. Other keys (``"index"`` ...) pass
    through. Meant as a :class:`~mmssl.data.DataBundle`'s ``batch_transform``: the trainer calls it on
    the device, without gradients.
    """

    def __init__(self, views: Sequence[BatchView], key: str = IMAGES_UINT8) -> None:
        if not views:
            raise ValueError("BatchViews needs at least one view")
        self.views = list(views)
        self.key = key

    @classmethod
    def from_specs(cls, specs: Sequence[ViewSpec], size: int) -> BatchViews:
        """One :class:`BatchView` per spec (equal specs share one), as :func:`views.sample_views`;
        ``size`` for specs that do not set their own."""
        built: dict[ViewSpec, BatchView] = {}
        for spec in specs:
            if spec not in built:
                built[spec] = BatchView(spec.output_size(size), spec)
        return cls([built[spec] for spec in specs])

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch[self.key]
        out = {k: v for k, v in batch.items() if k != self.key}
        out[VIEWS] = [view(images) for view in self.views]
        return out

    def __repr__(self) -> str:
        inner = "".join(f"\n  {view!r}," for view in self.views)
        return f"{type(self).__name__}([{inner}\n])"


def build_batch_views(name: str, size: int, options: ViewOptions | None = None) -> BatchViews:
    """The batched twin of :func:`views.build_views`: the same specs (preset ``name`` in
    :data:`VIEW_NAMES`, blur off at or below 32 px unless ``options.blur`` says otherwise, the
    recipe's ``options``; see :func:`~mmssl.modalities.image.view_spec.resolve_views`)."""
    if name not in VIEW_NAMES:
        raise ValueError(f"unknown view recipe '{name}'; available: {', '.join(VIEW_NAMES)}")
    return BatchViews.from_specs(resolve_views(name, size, options), size)
