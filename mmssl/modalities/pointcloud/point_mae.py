"""Point-MAE (Pang et al., ECCV 2022): masked autoencoding of point groups with a Chamfer loss, registered
as the ``point_mae`` method (encoder: ``point_transformer``).

Per shape (Sec. 3): ``G`` groups of ``K`` points (farthest-point-sampled centres, k nearest neighbours,
coordinates relative to the centre) are the tokens; a random ``mask_ratio`` of them (0.6) is hidden;
the encoder (:class:`~mmssl.modalities.pointcloud.point_transformer.PointTransformer`) embeds and encodes
only the visible groups, with their centres' positional embeddings; a light decoder appends one shared
mask token per hidden group, adds every group's positional embedding (the masked centres are given:
what is asked is the local shape, not where it is), runs transformer blocks, and a linear head predicts
each group's ``K x 3`` relative coordinates. The loss (eq. 3) is the L2 Chamfer distance between each
masked group's predicted and true point sets, averaged over the masked groups
(:func:`~mmssl.modalities.pointcloud.chamfer.chamfer_distance`); visible groups do not enter it.

Why this subclasses :class:`~mmssl.core.masked.MaskedModel` but overrides ``reconstruct``, ``loss`` and
``forward``, with its own decoder instead of :class:`~mmssl.core.masked.MaskedDecoder`:

- positions are per sample (each shape has its own centres), while ``MaskedDecoder`` adds one fixed
  ``[N, D]`` table and its ``forward(latent, mask)`` has no way to receive the masked tokens' centres;
- Point-MAE adds the positions before every block (encoder and decoder), not once at the input;
- tokens, positions and targets all come from one grouping per batch (farthest point sampling is the
  costly part), where ``MaskedModel.forward`` calls ``tokenize(x)`` and ``targets(x)`` separately;
- the loss compares point sets, which have no order: Chamfer, not the per-value squared error.

The masking itself is the core's (:class:`~mmssl.core.masking.TokenMasker`, ``random``), with its exact
visible / masked bookkeeping (``ids_keep``, ``ids_masked``, ``ids_restore``).

Augmentation (train mode only), as Point-MAE's pretraining: per-shape anisotropic scaling by
``U[scale_low, scale_high]`` per axis (2/3, 3/2) and a shift ``U[-shift, shift]`` per axis (0.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.masked import MaskedModel
from mmssl.core.masking import TokenMask, TokenMasker, gather_tokens, unshuffle
from mmssl.core.transformer import Block
from mmssl.data import DataBundle
from mmssl.data.keys import INDEX
from mmssl.eval.features import eval_mode
from mmssl.modalities.pointcloud.chamfer import chamfer_distance
from mmssl.modalities.pointcloud.grouping import PointGroups
from mmssl.modalities.pointcloud.keys import POINTS
from mmssl.modalities.pointcloud.point_transformer import (
    PointTransformer,
    init_point_mae_weights_,
    position_mlp,
)


class PointMaskedDecoder(nn.Module):
    """Point-MAE's decoder: ``forward(latent [B, K_vis, in_dim], centres [B, G, 3], mask)`` -> predicted
    relative coordinates ``[B, G, group_size, 3]`` of every group (only the masked ones are scored).

    The visible outputs (projected to ``embed_dim`` when the widths differ) and one learned mask token
    per masked group are put back in group order (:func:`~mmssl.core.masking.unshuffle`); the position
    MLP of every group's centre is added before each of ``depth`` pre-norm blocks; LayerNorm; a linear
    head to ``3 * group_size`` values (Point-MAE: width 384, depth 4, 6 heads, a 1x1 convolution head).
    """

    def __init__(
        self,
        in_dim: int,
        group_size: int,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        pos_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.group_size = int(group_size)
        self.embed = nn.Linear(in_dim, embed_dim) if in_dim != embed_dim else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = position_mlp(embed_dim, pos_hidden)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.pred = nn.Linear(embed_dim, 3 * self.group_size)
        init_point_mae_weights_(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, centres: Tensor, mask: TokenMask) -> Tensor:
        if latent.shape[1] != mask.num_keep or centres.shape[1] != mask.num_tokens:
            raise ValueError(
                f"decoder expects {mask.num_keep} visible of {mask.num_tokens} groups, got {latent.shape[1]} "
                f"encoder outputs and {centres.shape[1]} centres"
            )
        x = unshuffle(self.embed(latent), self.mask_token, mask.ids_restore)  # [B, G, D], group order
        pos = self.pos_embed(centres)
        for block in self.blocks:
            x = block(x + pos)
        b, g = centres.shape[:2]
        return self.pred(self.norm(x)).reshape(b, g, self.group_size, 3)


def scale_and_shift(
    points: Tensor,
    scale_low: float,
    scale_high: float,
    shift: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Point-MAE's ``PointcloudScaleAndTranslate``: ``x * s + t`` per shape of ``points [B, N, 3]``, with
    ``s ~ U[scale_low, scale_high]`` and ``t ~ U[-shift, shift]`` drawn per axis."""
    b, device = points.shape[0], points.device
    where = generator.device if generator is not None else device
    u = torch.rand(b, 2, 3, generator=generator, device=where).to(device=device, dtype=points.dtype)
    scale = scale_low + (scale_high - scale_low) * u[:, :1]
    return points * scale + (2 * u[:, 1:] - 1) * shift


class PointMAE(MaskedModel):
    """Point-MAE pretraining of a :class:`PointTransformer` (see the module docstring).

    Batches: ``{"points": [B, N, 3], ...}``. Logs ``loss`` (the L2 Chamfer distance of the masked
    groups).
    """

    consumes = frozenset({POINTS})
    encoder: PointTransformer
    decoder: PointMaskedDecoder

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        mask_ratio: float = 0.6,
        decoder_dim: int = 384,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
        decoder_mlp_ratio: float = 4.0,
        scale_low: float = 2.0 / 3.0,
        scale_high: float = 1.5,
        shift: float = 0.2,
    ) -> None:
        if not isinstance(encoder, PointTransformer):
            raise ValueError(
                "point_mae needs the point_transformer encoder (groups as tokens), got "
                f"{type(encoder).__name__}"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"method.mask_ratio must lie in (0, 1), got {mask_ratio}")
        if not 0 < scale_low <= scale_high or shift < 0:
            raise ValueError("point_mae needs 0 < scale_low <= scale_high and shift >= 0")
        decoder = PointMaskedDecoder(
            encoder.embed_dim,
            encoder.group_size,
            embed_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
            mlp_ratio=decoder_mlp_ratio,
        )
        super().__init__(
            encoder,
            tokenize=encoder.group,  # what each shape is cut into; embedding happens in reconstruct
            encode_visible=encoder.encode_visible,
            targets=group_targets,
            decoder=decoder,  # type: ignore[arg-type]  # per-sample positions: see the module docstring
            masker=TokenMasker("random", mask_ratio),
            input_key=POINTS,
        )
        self.augment = (float(scale_low), float(scale_high), float(shift))

    def reconstruct(  # type: ignore[override]
        self, groups: PointGroups, mask: TokenMask | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, TokenMask]:
        """Predicted relative coordinates ``[B, G, K, 3]`` of every group from the visible ones, and the
        mask used. The encoder sees exactly the groups ``mask.ids_keep``."""
        tokens, positions = self.encoder.embed(groups)
        b, g = tokens.shape[:2]
        if mask is None:
            mask = self.masker(b, g, device=tokens.device, generator=generator)
        latent = self.encode_visible(
            gather_tokens(tokens, mask.ids_keep), gather_tokens(positions, mask.ids_keep)
        )
        return self.decoder(latent, groups.centres, mask), mask

    def loss(self, pred: Tensor, target: Tensor, mask: TokenMask) -> Tensor:  # type: ignore[override]
        """Mean L2 Chamfer distance between predicted and true point sets of the groups ``mask.ids_masked``
        (``pred`` / ``target``: ``[B, G, K, 3]``)."""
        k = pred.shape[2]
        masked_pred = gather_tokens(pred, mask.ids_masked).reshape(-1, k, 3)
        masked_true = gather_tokens(target, mask.ids_masked).reshape(-1, target.shape[2], 3)
        return chamfer_distance(masked_pred, masked_true, squared=True)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        points = batch[POINTS][..., :3]
        if self.training:
            points = scale_and_shift(points, *self.augment)
        groups = self.tokenize(points)
        pred, mask = self.reconstruct(groups)
        return {"loss": self.loss(pred, self.targets(groups), mask)}

    @torch.no_grad()
    def save_figures(self, figures_dir: Path, data: Any, device: torch.device) -> None:
        """Up to four pretraining shapes, each twice: its true groups, then the visible groups with the
        decoder's prediction of the masked ones (masked / predicted groups in the second colour)."""
        from mmssl.modalities.pointcloud.render import figure_items, render_point_clouds

        items = figure_items(getattr(data, "pretrain", None))
        if not items:
            return
        points = torch.stack([torch.as_tensor(item[POINTS])[:, :3] for item in items]).to(device)
        with eval_mode(self):
            groups = self.tokenize(points)
            pred, mask = self.reconstruct(groups, generator=torch.Generator().manual_seed(0))
        k = pred.shape[2]
        masked = mask.mask.bool().unsqueeze(-1).expand(-1, -1, k)  # [B, G, K]
        true = (groups.neighbourhoods + groups.centres.unsqueeze(2)).cpu()
        shown = torch.where(masked.unsqueeze(-1), pred + groups.centres.unsqueeze(2), true.to(device)).cpu()
        colours = masked.long().reshape(len(items), -1).cpu()  # 0 visible, 1 masked
        clouds, labels, titles = [], [], []
        for s, item in enumerate(items):
            clouds += [true[s].reshape(-1, 3), shown[s].reshape(-1, 3)]
            labels += [colours[s], colours[s]]
            titles += [
                f"shape {int(item.get(INDEX, s))}: true groups",
                f"{mask.num_masked}/{mask.num_tokens} predicted",
            ]
        render_point_clouds(
            clouds, labels, Path(figures_dir) / "point_mae_reconstructions.png", titles=titles
        )


def group_targets(groups: PointGroups) -> Tensor:
    """What every group is reconstructed as: its points relative to its centre, ``[B, G, K, 3]``."""
    return groups.neighbourhoods
