"""Point-MAE's standard transformer over point groups (Pang et al., ECCV 2022, Sec. 3.1-3.2), registered as
the ``point_transformer`` encoder.

A cloud ``x [B, N, 3]`` is cut into ``G`` groups of ``K`` points (farthest-point-sampled centres and their
k nearest neighbours, :func:`~mmssl.modalities.pointcloud.grouping.group_points`); each group becomes one
token through a mini-PointNet (:class:`GroupEmbedding`); each token's position is an MLP of its centre's
coordinates; pre-norm transformer :class:`~mmssl.core.transformer.Block` s run on the tokens, the positions
being added again before every block as in the reference code; a final LayerNorm.

Outputs (the point-encoder contract of :mod:`mmssl.modalities.pointcloud.encoders`): ``"tokens" [B, N,
out_dim]`` one feature per input point, obtained as Point-MAE's segmentation head does, by
inverse-distance interpolation of the group features to the points (PointNet++ feature propagation);
``"global" [B, out_dim]`` the max over the group features; also ``"group_tokens" [B, G, out_dim]`` and
``"centres" [B, G, 3]``. The group features are the normalised outputs of the blocks listed in
``feature_layers`` (Point-MAE's segmentation model concatenates blocks 4, 8 and 12 of 12), concatenated,
so ``out_dim = embed_dim * len(feature_layers)``.

The masked-modelling pieces (:meth:`PointTransformer.embed`, :meth:`PointTransformer.encode_visible`) are
what :mod:`mmssl.modalities.pointcloud.point_mae` pretrains; after pretraining only this module is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmssl.core.transformer import Block
from mmssl.modalities.pointcloud.grouping import PointGroups, group_points, interpolate_to_points


class GroupEmbedding(nn.Module):
    """Point-MAE's token embedding ("Encoder" in its code), a mini-PointNet on each group's relative
    coordinates ``[B, G, K, 3]`` -> ``[B, G, out_dim]``:

    ``f = MLP1(p)`` per point (``3 -> d1 -> d2``, BN + ReLU between), ``g = max_K f``,
    ``h = MLP2([g, f])`` per point (``2 d2 -> d3 -> out_dim``), token ``= max_K h``
    (reference sizes ``d1, d2, d3 = 128, 256, 512``). Linear layers on the last axis are the reference's
    1x1 convolutions; BatchNorm statistics span every point of every group of the batch."""

    def __init__(self, out_dim: int, dims: Sequence[int] = (128, 256, 512)) -> None:
        super().__init__()
        d1, d2, d3 = (int(d) for d in dims)
        self.first = nn.ModuleList([nn.Linear(3, d1), nn.BatchNorm1d(d1), nn.Linear(d1, d2)])
        self.second = nn.ModuleList([nn.Linear(2 * d2, d3), nn.BatchNorm1d(d3), nn.Linear(d3, out_dim)])

    @staticmethod
    def _mlp(layers: nn.ModuleList, x: Tensor) -> Tensor:
        linear1, bn, linear2 = layers
        h = linear1(x)
        h = torch.relu(bn(h.reshape(-1, h.shape[-1])).reshape(h.shape))
        return linear2(h)

    def forward(self, neighbourhoods: Tensor) -> Tensor:
        f = self._mlp(self.first, neighbourhoods)  # [B, G, K, d2]
        g = f.amax(dim=2, keepdim=True).expand_as(f)
        return self._mlp(self.second, torch.cat([g, f], dim=-1)).amax(dim=2)


def position_mlp(embed_dim: int, hidden: int = 128) -> nn.Sequential:
    """Point-MAE's positional embedding: ``Linear(3, hidden) -> GELU -> Linear(hidden, embed_dim)`` of a
    centre's coordinates (learned, per sample: centres differ from shape to shape)."""
    return nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))


def init_point_mae_weights_(module: nn.Module) -> None:
    """Point-MAE's initialisation, in place: every ``nn.Linear`` truncated normal (std 0.02) with zero
    bias, every ``nn.LayerNorm`` (1, 0) (BatchNorm keeps torch's (1, 0) default)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PointTransformer(nn.Module):
    """The encoder (see the module docstring); registered as ``point_transformer``.

    Options: ``num_groups`` ``G`` and ``group_size`` ``K`` (Point-MAE: 64 x 32 on 1,024 points; a cloud
    needs at least ``max(G, K)`` points); ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio`` of the
    transformer (Point-MAE: 384, 12, 6, 4); ``embed_dims``: the mini-PointNet's hidden widths (128, 256,
    512); ``pos_hidden``: the position MLP's hidden width (128); ``feature_layers``: 0-based blocks whose
    normalised outputs form the group features (default: the last block only; Point-MAE's segmentation
    uses ``[3, 7, 11]``). ``in_channels``: 3 (xyz; normals are not used).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_groups: int = 64,
        group_size: int = 32,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        embed_dims: Sequence[int] = (128, 256, 512),
        pos_hidden: int = 128,
        feature_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if in_channels != 3:
            raise ValueError(
                f"point_transformer reads xyz only (in_channels=3), got in_channels={in_channels}"
            )
        if len(tuple(embed_dims)) != 3:
            raise ValueError(f"point_transformer embed_dims needs 3 widths (d1, d2, d3), got {embed_dims}")
        layers = tuple(int(i) for i in (feature_layers if feature_layers is not None else (depth - 1,)))
        if not layers or any(not 0 <= i < depth for i in layers):
            raise ValueError(f"feature_layers must list blocks in [0, {depth}), got {list(layers)}")
        self.in_channels = in_channels
        self.num_groups, self.group_size = int(num_groups), int(group_size)
        self.embed_dim, self.feature_layers = int(embed_dim), layers
        self.group_embed = GroupEmbedding(embed_dim, embed_dims)
        self.pos_embed = position_mlp(embed_dim, pos_hidden)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.out_dim: int = self.embed_dim * len(layers)
        init_point_mae_weights_(self)

    def group(self, x: Tensor) -> PointGroups:
        """The ``G`` groups of ``K`` points of ``x [B, N, 3]``."""
        if x.dim() != 3 or x.shape[-1] != 3:
            raise ValueError(f"point_transformer expects [B, N, 3] points, got {tuple(x.shape)}")
        return group_points(x, self.num_groups, self.group_size)

    def embed(self, groups: PointGroups) -> tuple[Tensor, Tensor]:
        """``(tokens, positions)``, each ``[B, G, embed_dim]``: the mini-PointNet of every group and the
        position MLP of its centre."""
        return self.group_embed(groups.neighbourhoods), self.pos_embed(groups.centres)

    def run_blocks(self, tokens: Tensor, positions: Tensor) -> list[Tensor]:
        """Every block's output (un-normalised), positions added before each block (Point-MAE)."""
        outputs, x = [], tokens
        for block in self.blocks:
            x = block(x + positions)
            outputs.append(x)
        return outputs

    def encode_visible(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """The normalised last-block output ``[B, K, embed_dim]`` for any subset of tokens (the visible
        ones in masked pretraining) with their positions."""
        return self.norm(self.run_blocks(tokens, positions)[-1])

    def group_features(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """``[B, G, out_dim]``: the normalised outputs of ``feature_layers``, concatenated."""
        outputs = self.run_blocks(tokens, positions)
        return torch.cat([self.norm(outputs[i]) for i in self.feature_layers], dim=-1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        groups = self.group(x)
        feats = self.group_features(*self.embed(groups))
        return {
            "global": feats.amax(dim=1),
            "tokens": interpolate_to_points(x, groups.centres, feats),
            "group_tokens": feats,
            "centres": groups.centres,
        }


#: the registered ``point_transformer`` builder: the class itself (its options are its constructor's)
point_transformer = PointTransformer
