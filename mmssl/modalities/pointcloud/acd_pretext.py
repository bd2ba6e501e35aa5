"""ACD pretext (Gadelha, RoyChowdhury et al., ECCV 2020): learn per-point features from convex parts.

Each unlabelled shape is decomposed offline into approximately convex components (the data side
stores the component id of every sampled point as ``batch["acd"]``, -1 when unknown). The backbone's
per-point embeddings ``f_i`` (its ``"tokens"``) are trained with the pairwise contrastive loss of
:func:`mmssl.core.losses.pairwise_group_contrastive`: for points i != j of one shape,

    l(i, j) = 1 - cos(f_i, f_j)              same component   (positives)
    l(i, j) = max(0, cos(f_i, f_j) - 0.5)    other component  (negatives, subsampled to as many
                                                               as the positives)

The paper applies this directly to the 128-d output of the segmentation trunk (no projection
head): the same features a part-segmentation classifier later reads. ``projector_dim > 0`` adds an
MLP head for experiments. All pairs of a 2048-point shape are ~2M pairs; the loss here uses
``loss_points`` random points per shape (an unbiased estimate of the same two means).

Augmentation follows the reference training script: per-shape isotropic scaling in [0.8, 1.25]
and a shift in [-0.1, 0.1] per axis; optional rotation about the up axis and Gaussian jitter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.heads import ProjectionHead
from mmssl.core.losses import pairwise_group_contrastive
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import INDEX
from mmssl.modalities.pointcloud.keys import ACD_LABELS, NORMALS, POINTS


def augment_points(
    points: Tensor,
    normals: Tensor | None = None,
    *,
    scale: Sequence[float] = (0.8, 1.25),
    shift: float = 0.1,
    rotate_up: bool = False,
    up_axis: int = 1,
    jitter: float = 0.0,
    jitter_clip: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Random per-shape augmentation of ``points [B, N, 3]`` (and unit ``normals [B, N, 3]``).

    In order: rotation by a uniform angle about ``up_axis`` (0/1/2 = x/y/z; ShapeNet is y-up) when
    ``rotate_up``; isotropic scaling by a uniform factor in ``scale``; a uniform shift in
    ``[-shift, shift]`` per axis; per-point Gaussian noise of std ``jitter`` clipped to
    ``+-jitter_clip``. Normals follow the rotation only (isotropic scaling and shifts leave them
    unchanged). Returns new tensors; the inputs are not modified.
    """
    b, device = points.shape[0], points.device

    def uniform(*shape: int) -> Tensor:
        gen_device = generator.device if generator is not None else device
        return torch.rand(*shape, generator=generator, device=gen_device).to(device)

    if rotate_up:
        a, c = [axis for axis in range(3) if axis != up_axis]  # rotate in the plane of the other two
        theta = uniform(b) * (2 * math.pi)
        cos, sin = theta.cos(), theta.sin()
        rot = torch.eye(3, device=device).repeat(b, 1, 1)
        rot[:, a, a], rot[:, a, c], rot[:, c, a], rot[:, c, c] = cos, -sin, sin, cos
        points = points @ rot.transpose(1, 2).to(points.dtype)
        if normals is not None:
            normals = normals @ rot.transpose(1, 2).to(normals.dtype)
    low, high = float(scale[0]), float(scale[1])
    factor = low + (high - low) * uniform(b, 1, 1)
    offset = (2 * uniform(b, 1, 3) - 1) * shift
    points = points * factor.to(points.dtype) + offset.to(points.dtype)
    if jitter > 0:
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(points.shape, generator=generator, device=gen_device).to(device)
        points = points + (noise * jitter).clamp(-jitter_clip, jitter_clip).to(points.dtype)
    return points, normals


def encoder_input(points: Tensor, normals: Tensor | None, in_channels: int) -> Tensor:
    """What a point encoder takes: ``points`` (3 channels) or ``[points, normals]`` (6)."""
    if in_channels == 3:
        return points
    if in_channels == 6:
        if normals is None:
            raise ValueError("the encoder takes normals (in_channels=6) but the data has none")
        return torch.cat([points, normals], dim=-1)
    raise ValueError(f"point encoders take 3 (xyz) or 6 (xyz + normals) channels, got {in_channels}")


def acd_loss(
    embeddings: Tensor,
    components: Tensor,
    *,
    margin: float = 0.5,
    balance: bool = True,
    loss_points: int | None = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ACD pairwise loss on ``embeddings [B, N, D]`` grouped by ``components [B, N]``.

    ``loss_points``: the loss is computed on that many random points per shape (None or >= N:
    all points); the pair count grows with its square.
    """
    b, n = components.shape
    if loss_points is not None and loss_points < n:
        gen_device = generator.device if generator is not None else embeddings.device
        scores = torch.rand(b, n, generator=generator, device=gen_device).to(embeddings.device)
        keep = scores.argsort(dim=1)[:, :loss_points]
        embeddings = embeddings.gather(1, keep.unsqueeze(-1).expand(-1, -1, embeddings.shape[-1]))
        components = components.gather(1, keep)
    return pairwise_group_contrastive(
        embeddings, components, margin=margin, balance=balance, generator=generator
    )


class ACDPretext(Method):
    """Pairwise contrastive pretraining on approximate convex components (see the module docstring).

    Batches are ``{"points": [B, N, 3], "normals": [B, N, 3], "acd": [B, N] int64, ...}``.
    """

    consumes = frozenset({POINTS, ACD_LABELS})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        margin: float = 0.5,
        balance: bool = True,
        loss_points: int | None = 256,
        weight: float = 1.0,
        projector_dim: int = 0,
        projector_hidden: int = 256,
        scale_low: float = 0.8,
        scale_high: float = 1.25,
        shift: float = 0.1,
        rotate_up: bool = False,
        up_axis: int = 1,
        jitter: float = 0.0,
    ) -> None:
        """ACD pretext: same-convex-component points pulled together, others pushed below ``margin``.

        ``margin``: cosine above which negative pairs are penalised (paper 0.5). ``balance``: subsample
        negatives to the number of positives per shape (paper). ``loss_points``: random points per
        shape entering the pairwise loss (None: all). ``weight``: the loss weight lambda (paper: 1 when
        pretraining). ``projector_dim``: 0 = loss on the encoder tokens as in the paper, > 0 = on an MLP
        projection (``projector_hidden`` wide). Augmentation: scale in [``scale_low``, ``scale_high``],
        shift in +-``shift``, ``rotate_up`` about axis ``up_axis`` (1 = y, ShapeNet's up), Gaussian
        ``jitter`` std (clipped at 0.05).
        """
        super().__init__()
        self.encoder = encoder
        self.margin, self.balance, self.loss_points, self.weight = margin, balance, loss_points, weight
        self.augment = {
            "scale": (scale_low, scale_high),
            "shift": shift,
            "rotate_up": rotate_up,
            "up_axis": up_axis,
            "jitter": jitter,
        }
        self.in_channels = int(getattr(encoder, "in_channels", 3))
        self.projector = (
            ProjectionHead(encoder.out_dim, projector_hidden, projector_dim) if projector_dim > 0 else None
        )

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        points, normals = batch[POINTS], batch.get(NORMALS)
        if self.training:
            points, normals = augment_points(points, normals, **self.augment)
        tokens = self.encoder(encoder_input(points, normals, self.in_channels))["tokens"]
        emb = self.projector(tokens) if self.projector is not None else tokens
        components = batch[ACD_LABELS].long()
        loss = self.weight * acd_loss(
            emb, components, margin=self.margin, balance=self.balance, loss_points=self.loss_points
        )
        labelled = (components >= 0).float().mean()
        return {"loss": loss, "acd_labelled": labelled.detach()}

    @torch.no_grad()
    def save_figures(self, figures_dir: Path, data: Any, device: torch.device) -> None:
        """A few pretraining shapes coloured by their convex component (what the loss groups)."""
        from mmssl.modalities.pointcloud.render import figure_items, render_point_clouds

        items = figure_items(getattr(data, "pretrain", None))
        if not items:
            return
        render_point_clouds(
            [item[POINTS] for item in items],
            [item[ACD_LABELS] for item in items],
            Path(figures_dir) / "acd_components.png",
            titles=[f"shape {int(item.get(INDEX, i))}: ACD components" for i, item in enumerate(items)],
            up_axis=int(self.augment.get("up_axis", 1)),
        )
