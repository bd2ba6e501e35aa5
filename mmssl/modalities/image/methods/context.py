"""Context prediction (Doersch, Gupta & Efros, ICCV 2015): where is the second patch?

A patch and one of its 8 neighbours in a 3x3 arrangement are cut from an image; a shared trunk
embeds each, and a classifier on the concatenated pair predicts the neighbour's relative position
(8-way cross-entropy). Labels are the neighbours in row-major order, skipping the centre::

    0 1 2        (dy, dx) = (-1,-1) (-1,0) (-1,1)
    3 . 4                   ( 0,-1)        ( 0,1)
    5 6 7                   ( 1,-1) ( 1,0) ( 1,1)

Geometry (paper: 96-px patches, a gap of 48 px = half a patch, jitter up to 7 px): the neighbour's
top-left corner is ``centre + (dy, dx) (P + G) + j`` with ``j`` uniform in ``[-J, J]`` per axis, so
the patches never touch and the network cannot match edges or continue lines across them. At
this toolkit's sizes (64-px procedural images): P = 14, G = 7 (half a patch), J = 1 (7/96 of a
patch). The first patch is placed uniformly among the positions where the pair fits.

Shortcut counter-measures, as the paper:

- chromatic aberration: lenses shift colour channels relative to each other by an amount that
  grows away from the image centre, which tells a network where a patch lies. ``aberration="drop"``
  ("colour dropping") keeps one random channel per patch and replaces the other two by Gaussian
  noise of 1/100 of its standard deviation; ``"project"`` removes the green-magenta component
  (projection onto the plane orthogonal to (-1, 2, -1)), which carries most of the aberration.
- low-level statistics: some patches (``downsample_prob``) are downsampled (down to
  ``min_downsample`` px a side, area filter) and upsampled back (bilinear).
- per-patch normalisation: each channel loses its patch mean, and the patch is divided by its own
  standard deviation (over its kept channels), so brightness and contrast say nothing about
  position.

The trunk applied to each patch IS the method's ``encoder``; it is evaluated on whole images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.heads import ProjectionHead
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE
from mmssl.modalities.image.color import to_unit_rgb
from mmssl.modalities.image.methods.pretext import (
    classification_outputs,
    crop_patches,
    patch_embedding,
    patch_set_logits,
)

# (dy, dx) of label 0..7: the 3x3 neighbourhood in row-major order without the centre.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
)
ABERRATION_MODES = ("drop", "project", "none")


def sample_context_pairs(
    batch_size: int,
    image_size: int,
    patch_size: int,
    gap: int,
    jitter: int,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw one (centre, neighbour) pair per image from torch's global RNG.

    Returns ``top [B, 2]``, ``left [B, 2]`` (column 0: the first patch, column 1: the neighbour) and
    ``labels [B]`` in 0..7 (see :data:`NEIGHBOUR_OFFSETS`). The first patch's corner is uniform over
    the positions where both patches fit for the drawn direction and any jitter.
    """
    step = patch_size + gap
    if image_size < 2 * patch_size + gap + jitter:
        raise ValueError(
            f"image_size {image_size} is too small for patch_size {patch_size}, gap {gap}, jitter {jitter}"
        )
    labels = torch.randint(len(NEIGHBOUR_OFFSETS), (batch_size,), device=device)
    offsets = torch.tensor(NEIGHBOUR_OFFSETS, device=device)[labels]  # [B, 2] (dy, dx)
    # Per axis the first corner p must satisfy 0 <= p <= S - P, and so must the neighbour's corner
    # p + d * step + j for every j in [-J, J]: p in [max(0, J - d step), min(S - P, S - P - d step - J)].
    lo = (jitter - offsets * step).clamp_min(0)
    hi = (image_size - patch_size - offsets * step - jitter).clamp_max(image_size - patch_size)
    first = lo + (torch.rand(batch_size, 2, device=device) * (hi - lo + 1)).long().clamp_max(hi - lo)
    jit = torch.randint(-jitter, jitter + 1, (batch_size, 2), device=device)
    second = first + offsets * step + jit
    top = torch.stack([first[:, 0], second[:, 0]], dim=1)
    left = torch.stack([first[:, 1], second[:, 1]], dim=1)
    return top, left, labels


def random_downsample(patches: Tensor, prob: float, min_size: int) -> Tensor:
    """Downsample a random subset of ``[N, C, P, P]`` patches (area) to one random side in
    ``[min_size, P - 1]`` (drawn per call), then upsample back (bilinear)."""
    n, _, p, _ = patches.shape
    if prob <= 0 or min_size >= p:
        return patches
    pick = torch.rand(n, device=patches.device) < prob
    size = int(torch.randint(min_size, p, (1,)))
    small = F.interpolate(patches, size=(size, size), mode="area")
    restored = F.interpolate(small, size=(p, p), mode="bilinear", align_corners=False)
    return torch.where(pick.view(n, 1, 1, 1), restored, patches)


def normalise_patches(patches: Tensor, keep: Tensor | None = None, eps: float = 1e-3) -> Tensor:
    """Per patch ``[N, C, P, P]``: subtract each channel's mean, divide by the patch's standard
    deviation over the channels in ``keep`` ``[N, C]`` (all channels when None)."""
    centred = patches - patches.mean(dim=(2, 3), keepdim=True)
    if keep is None:
        std = centred.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    else:
        k = keep.to(patches.dtype).view(*keep.shape, 1, 1)
        std = (centred.pow(2) * k).sum(dim=(1, 2, 3)) / (k.sum(dim=(1, 2, 3)) * patches.shape[-1] ** 2)
        std = std.sqrt().view(-1, 1, 1, 1)
    return centred / std.clamp_min(eps)


def suppress_chromatic_aberration(patches: Tensor, mode: str, noise_ratio: float = 0.01) -> Tensor:
    """Counter-measure against chromatic aberration, then per-patch normalisation.

    ``drop``: keep one random channel per patch, replace the others by N(0, (noise_ratio * std)^2)
    of the kept channel; ``project``: remove the green-magenta axis ``(-1, 2, -1) / sqrt(6)``;
    ``none``: only normalise.
    """
    n, c = patches.shape[:2]
    if mode == "drop":
        keep = F.one_hot(torch.randint(c, (n,), device=patches.device), c).bool()  # [N, C]
        normalised = normalise_patches(patches, keep)
        noise = torch.randn_like(normalised) * noise_ratio
        return torch.where(keep.view(n, c, 1, 1), normalised, noise)
    if mode == "project":
        axis = torch.tensor([-1.0, 2.0, -1.0], device=patches.device, dtype=patches.dtype) / 6**0.5
        along = torch.einsum("nchw,c->nhw", patches, axis)
        patches = patches - along.unsqueeze(1) * axis.view(1, c, 1, 1)
    elif mode != "none":
        raise ValueError(f"aberration must be one of {ABERRATION_MODES}, got '{mode}'")
    return normalise_patches(patches)


class ContextPrediction(Method):
    """Context prediction (Doersch et al. 2015): 8-way relative position of a neighbouring patch (see
    the module docstring). Registered as ``context``.

    Args:
        encoder: the shared patch trunk (returns ``{"global": [N, D]}``); evaluated downstream.
        data: the run's data bundle (unused).
        patch_size / gap / jitter: geometry in pixels of the training images (defaults for 64-px
            images; the gap is half a patch in the paper).
        aberration: ``drop`` (keep one colour channel, noise elsewhere), ``project`` (remove
            green-magenta) or ``none``.
        noise_ratio: std of the replacement noise relative to the kept channel's std (``drop``).
        downsample_prob / min_downsample: share of patches down- and up-sampled, and the smallest side.
        fc_dim: per-patch embedding (Linear-BN-ReLU, shared, the paper's fc6).
        hidden_dim: hidden width of the pair classifier (fc7; fc8 is the 8-way output).
    """

    consumes = frozenset({IMAGE})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        patch_size: int = 14,
        gap: int = 7,
        jitter: int = 1,
        aberration: str = "drop",
        noise_ratio: float = 0.01,
        downsample_prob: float = 0.3,
        min_downsample: int = 5,
        fc_dim: int = 256,
        hidden_dim: int = 512,
    ) -> None:
        super().__init__()
        if aberration not in ABERRATION_MODES:
            raise ValueError(f"method.aberration must be one of {ABERRATION_MODES}, got '{aberration}'")
        if patch_size < 2 or gap < 0 or jitter < 0:
            raise ValueError("method.patch_size must be >= 2, gap and jitter >= 0")
        self.encoder = encoder
        self.patch_size, self.gap, self.jitter = patch_size, gap, jitter
        self.aberration, self.noise_ratio = aberration, noise_ratio
        self.downsample_prob, self.min_downsample = downsample_prob, min_downsample
        self.patch_fc = patch_embedding(encoder.out_dim, fc_dim)
        self.classifier = ProjectionHead(2 * fc_dim, hidden_dim, len(NEIGHBOUR_OFFSETS), num_layers=2)

    def make_pairs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images ``[B, 3, S, S]`` -> network input ``[B, 2, 3, P, P]`` and labels ``[B]``."""
        b, _, h, w = images.shape
        if h != w:
            raise ValueError(f"context prediction expects square images, got {h}x{w}")
        top, left, labels = sample_context_pairs(b, h, self.patch_size, self.gap, self.jitter, images.device)
        patches = crop_patches(to_unit_rgb(images), top, left, self.patch_size)
        flat = patches.reshape(2 * b, *patches.shape[2:])
        flat = random_downsample(flat, self.downsample_prob, self.min_downsample)
        flat = suppress_chromatic_aberration(flat, self.aberration, self.noise_ratio)
        return flat.view_as(patches), labels

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        pairs, labels = self.make_pairs(batch[IMAGE])
        # the classifier sees (first patch, neighbour) concatenated
        logits = patch_set_logits(self.encoder, self.patch_fc, self.classifier, pairs)
        return classification_outputs(logits, labels)
