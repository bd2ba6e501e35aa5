"""Colorful image colorization (Zhang, Isola & Efros, ECCV 2016): predict colour from lightness.

An image is converted to CIE Lab (:mod:`mmssl.modalities.image.color`); the network sees only the
lightness ``L`` and predicts, for every output pixel, a distribution over the Q quantised in-gamut
ab bins. The target ``Z`` soft-encodes the true ab over the 5 nearest bins (Gaussian, sigma = 5),
and the loss is a class-rebalanced multinomial cross-entropy (Zhang et al. eq. 2)::

    L(Z^, Z) = - sum_{h,w} v(Z_hw) sum_q Z_hwq log Z^_hwq,   v(Z_hw) = w_{q*},  q* = argmax_q Z_hwq
    w ∝ ((1 - lambda) p~ + lambda / Q)^-1,   lambda = 1/2,   sum_q p~_q w_q = 1

``p~`` is the empirical distribution of ab bins measured on the training images, smoothed with a
Gaussian kernel (sigma = 5). The runner does not hand the dataset to a method, so the histogram is
accumulated from the training batches of the first ``prior_steps`` forward passes and then frozen
(buffers: saved in checkpoints, so a resumed run keeps it); until then the weights come from the
histogram so far. Near-gray images (mean chroma ``sqrt(a^2 + b^2)`` below ``gray_threshold``) are
left out of the loss and of the histogram, as the paper drops grayscale images.

Predictions are decoded with the annealed mean (T = 0.38) of the bin distribution, at the output
resolution (1/``out_stride`` of the input, 1/4 in the paper), upsampled bilinearly and put together
with the input's full-resolution L.

Network: the registry encoder (built with ``in_channels: 1``) is the trunk; its ``tokens`` (the final
feature map) go through a small head: 1x1 conv, bilinear upsampling to the output resolution, 3x3
conv, 1x1 conv to Q logits. **The evaluated ``encoder`` is** :class:`LuminanceEncoder`, a thin
wrapper that converts normalised RGB input to ``(L - 50) / 50`` and calls the trunk, so the
standard evaluators (which feed normalised RGB) measure the representation of the L channel, as
Zhang et al. evaluate it. Its state dict is the trunk's (same keys), so ``encoder.pt`` rebuilds the
plain 1-channel trunk with ``load_encoder``: a downstream user of that file feeds it
:func:`~mmssl.modalities.image.color.luminance_input` of their images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE
from mmssl.eval.features import eval_mode
from mmssl.modalities.image.color import (
    ab_gamut_bins,
    annealed_mean,
    lab_to_rgb,
    luminance_input,
    nearest_bin,
    rebalance_weights,
    rgb_to_lab,
    smooth_distribution,
    soft_encode,
    to_unit_rgb,
)
from mmssl.modalities.image.figures import figure_inputs

_TRUNK = "trunk."


def _state_dict_without_trunk_prefix(module: nn.Module, state_dict: dict, prefix: str, _meta: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + _TRUNK)]:
        state_dict[prefix + key[len(prefix + _TRUNK) :]] = state_dict.pop(key)


def _state_dict_with_trunk_prefix(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + _TRUNK)]:
        state_dict[prefix + _TRUNK + key[len(prefix) :]] = state_dict.pop(key)


class LuminanceEncoder(nn.Module):
    """Normalised RGB ``[B, 3, H, W]`` -> ``trunk((L - 50) / 50)``: the colorization trunk as an
    encoder of RGB images (output contract and ``out_dim`` are the trunk's).

    The state dict has the trunk's own keys (hooks drop / restore the ``trunk.`` prefix), so the
    saved encoder loads into a freshly built trunk and a method checkpoint keeps ``encoder.*`` keys.
    """

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.out_dim: int = trunk.out_dim
        self.register_state_dict_post_hook(_state_dict_without_trunk_prefix)
        self.register_load_state_dict_pre_hook(_state_dict_with_trunk_prefix)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.trunk(luminance_input(x))


class ColorizationHead(nn.Module):
    """Feature map ``[B, D, h, w]`` -> bin logits ``[B, Q, H', W']`` at a requested size."""

    def __init__(self, in_dim: int, hidden: int, num_bins: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
        )
        self.refine = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
        )
        self.classify = nn.Conv2d(hidden, num_bins, 1)

    def forward(self, fmap: Tensor, size: tuple[int, int]) -> Tensor:
        x = F.interpolate(self.reduce(fmap), size=size, mode="bilinear", align_corners=False)
        return self.classify(self.refine(x))


def tokens_to_map(tokens: Tensor) -> Tensor:
    """Encoder tokens ``[B, N, D]`` of a square grid -> feature map ``[B, D, sqrt(N), sqrt(N)]``."""
    b, n, d = tokens.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"colorization needs a square token grid, got {n} tokens")
    return tokens.transpose(1, 2).reshape(b, d, side, side)


class Colorization(Method):
    """Colorization (Zhang et al. 2016): predict quantised ab from L with a class-rebalanced
    cross-entropy over in-gamut bins; decode with the annealed mean (see the module docstring).
    Registered as ``colorization``; saves ``figures/colorization.png`` after training.

    Args:
        encoder: the trunk, taking 1-channel L input (``encoder.in_channels: 1``, e.g. ``small_cnn``)
            and returning ``{"tokens": [B, N, D]}`` of a square grid. Wrapped as ``self.encoder``,
            which converts RGB to L itself.
        data: the run's data bundle (unused).
        grid: ab bin spacing (10). sigma / num_neighbours: soft encoding (5, 5).
        rebalance_lambda: lambda of the rebalancing weights (0.5 as the paper; 1 = no rebalancing).
        prior_steps: training batches whose ab histogram makes up p~.
        temperature: annealed-mean temperature for decoding (0.38).
        out_stride: input side / output side (4 as the paper).
        head_dim: width of the prediction head.
        gray_threshold: images with mean chroma below it are skipped.
    """

    consumes = frozenset({IMAGE})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        grid: float = 10.0,
        sigma: float = 5.0,
        num_neighbours: int = 5,
        rebalance_lambda: float = 0.5,
        prior_steps: int = 50,
        temperature: float = 0.38,
        out_stride: int = 4,
        head_dim: int = 64,
        gray_threshold: float = 5.0,
    ) -> None:
        super().__init__()
        self.encoder = LuminanceEncoder(encoder)
        bins = ab_gamut_bins(grid)
        q = len(bins)
        self.register_buffer("bins", bins)
        self.register_buffer("bin_counts", torch.zeros(q, dtype=torch.float64))
        self.register_buffer("prior_batches", torch.zeros((), dtype=torch.long))
        self.register_buffer("class_weights", torch.ones(q))
        self.head = ColorizationHead(encoder.out_dim, head_dim, q)
        self.sigma, self.num_neighbours = sigma, num_neighbours
        self.rebalance_lambda, self.prior_steps = rebalance_lambda, prior_steps
        self.temperature, self.out_stride, self.gray_threshold = temperature, out_stride, gray_threshold

    # ------------------------------------------------------------------ pieces
    def logits(self, lum: Tensor) -> Tensor:
        """``(L - 50) / 50`` ``[B, 1, H, W]`` -> bin logits ``[B, Q, H / s, W / s]``."""
        h, w = lum.shape[-2:]
        fmap = tokens_to_map(self.encoder.trunk(lum)["tokens"])
        return self.head(fmap, (max(1, h // self.out_stride), max(1, w // self.out_stride)))

    @property
    def prior(self) -> Tensor:
        """The smoothed empirical bin distribution p~ measured so far (uniform before any data)."""
        counts = self.bin_counts.float()
        if counts.sum() <= 0:
            return torch.full_like(counts, 1.0 / counts.numel())
        return smooth_distribution(counts / counts.sum(), self.bins, self.sigma)

    @torch.no_grad()
    def _update_prior(self, ab_small: Tensor, colourful: Tensor) -> None:
        idx = nearest_bin(ab_small[colourful], self.bins).flatten()
        self.bin_counts += torch.bincount(idx, minlength=len(self.bins)).to(self.bin_counts)
        self.prior_batches += 1
        self.class_weights.copy_(rebalance_weights(self.prior, self.rebalance_lambda))

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        images = batch["image"]
        lab = rgb_to_lab(to_unit_rgb(images))
        lum = (lab[:, :1] - 50.0) / 50.0
        logits = self.logits(lum)
        ab_small = F.interpolate(lab[:, 1:], size=logits.shape[-2:], mode="area")
        colourful = lab[:, 1:].norm(dim=1).mean(dim=(1, 2)) > self.gray_threshold  # [B]
        if self.training and int(self.prior_batches) < self.prior_steps and colourful.any():
            self._update_prior(ab_small, colourful)
        target = soft_encode(ab_small, self.bins, self.sigma, self.num_neighbours)  # [B, Q, h, w]
        ce = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)  # [B, h, w]
        weight = self.class_weights[target.argmax(dim=1)] * colourful.view(-1, 1, 1)
        pixels = colourful.sum() * ce[0].numel()
        loss = (weight * ce).sum() / pixels.clamp_min(1)
        plain = (ce * colourful.view(-1, 1, 1)).sum() / pixels.clamp_min(1)
        return {"loss": loss, "ce": plain.detach(), "skipped_gray": (~colourful).float().mean()}

    @torch.no_grad()
    def colourise(self, images: Tensor) -> Tensor:
        """Normalised RGB ``[B, 3, H, W]`` -> sRGB in [0, 1]: the input's L with the annealed-mean ab."""
        lab = rgb_to_lab(to_unit_rgb(images))
        ab = annealed_mean(self.logits((lab[:, :1] - 50.0) / 50.0).float(), self.bins, self.temperature)
        ab = F.interpolate(ab, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return lab_to_rgb(torch.cat([lab[:, :1], ab], dim=1))

    def save_figures(
        self, figures_dir: Path, data: DataBundle, device: torch.device, num_images: int = 12
    ) -> Path | None:
        """PNG grid, one column per test image; rows: grayscale input (L only) / annealed-mean
        colourisation / original."""
        from torchvision.utils import save_image

        images = figure_inputs(data, num_images, device)
        if images is None:
            return None
        with eval_mode(self):
            coloured = self.colourise(images)
        original = to_unit_rgb(images)
        lum = rgb_to_lab(original)[:, :1]
        gray = lab_to_rgb(torch.cat([lum, torch.zeros_like(lum), torch.zeros_like(lum)], dim=1))
        path = Path(figures_dir) / "colorization.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid = torch.cat([gray, coloured, original]).float().cpu()
        upscale = max(1, 96 // images.shape[-1])  # small images are enlarged to be seen
        grid = F.interpolate(grid, scale_factor=upscale, mode="nearest")
        save_image(grid, path, nrow=len(images), padding=2, pad_value=1.0)
        return path
