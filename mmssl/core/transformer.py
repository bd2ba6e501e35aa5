"""Transformer pieces shared by every modality's token encoders and decoders.

- :class:`Attention` / :class:`Block`: the pre-norm ViT block (Dosovitskiy et al. 2021), as MAE's
  encoder uses it.
- :func:`sincos_pos_embed`: fixed sine-cosine positions on a grid of any dimension (1-D sequences,
  2-D patch grids of images and spectrograms, 3-D space-time cubes of video);
  :func:`sincos_pos_embed_2d` is MAE's 2-D table with its all-zero CLS row.

Nothing here knows what a token is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sincos_pos_embed(embed_dim: int, grid: Sequence[int]) -> torch.Tensor:
    """Fixed sine-cosine positions on a ``len(grid)``-D grid (Vaswani et al. 2017, one axis at a time):
    the channels are split evenly over the axes; an axis with coordinate ``a`` gets
    ``[sin(a w), cos(a w)]`` with ``w_k = 10000^(-k / K)``, ``k = 0..K-1``, ``K = D / (2 len(grid))``.
    Cells in row-major order (last axis fastest); returns ``[prod(grid), D]``.

    One axis is the 1-D table of the transformer paper; two axes are MAE's 2-D table
    (:func:`sincos_pos_embed_2d`); three (time, height, width) serve space-time tubes.
    """
    axes = len(grid)
    if axes < 1 or embed_dim % (2 * axes) != 0:
        raise ValueError(
            f"sin-cos positions on a {axes}-D grid need embed_dim divisible by {2 * axes}, got {embed_dim}"
        )
    per_axis = embed_dim // (2 * axes)
    omega = 1.0 / 10000 ** (torch.arange(per_axis, dtype=torch.float64) / per_axis)
    coords = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in grid), indexing="ij")
    parts = []
    for pos in coords:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def sincos_pos_embed_2d(
    embed_dim: int, grid_size: int | tuple[int, int], cls_token: bool = True
) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (Vaswani et al. 2017, extended to 2-D as in MAE).

    Patch ``(r, c)`` (row-major order) gets ``[sin(r w), cos(r w), sin(c w), cos(c w)]`` with
    frequencies ``w_k = 10000^(-k / (D/4))``, ``k = 0..D/4-1``: the first half of the channels
    encodes the row, the second half the column. ``grid_size``: side of a square grid or
    ``(rows, cols)``. The CLS position (first row) is all zeros. Returns ``[1 + N, D]`` (or ``[N, D]``
    without the CLS row).
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"sin-cos positions need embed_dim divisible by 4, got {embed_dim}")
    grid = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    emb = sincos_pos_embed(embed_dim, grid)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim), emb], dim=0)
    return emb


class Attention(nn.Module):
    """Multi-head self-attention, softmax(Q K^T / sqrt(d)) V, via ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, d_head]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
