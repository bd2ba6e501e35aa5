"""A space-time ViT for clips (VideoMAE's encoder, Tong et al., NeurIPS 2022, Sec. 3.3), and cube patchify.

A clip ``[B, T, 3, H, W]`` is cut into non-overlapping *tubelets* (cubes) of ``t x p x p`` voxels
(VideoMAE: ``t = 2``, ``p = 16``), each embedded by one linear map (a ``Conv3d`` with kernel = stride =
``(t, p, p)``), giving ``N = T' H' W'`` tokens with ``T' = T / t``, ``H' = H / p``, ``W' = W / p``, in
time-major, then row-major order (token ``n = (t' H' + i) W' + j``; the layout ``tube_mask`` of
:mod:`mmssl.core.masking` expects, ``T'`` "frames" of ``S = H' W'`` tokens). Fixed 3-D sine-cosine
positions (:func:`~mmssl.core.transformer.sincos_pos_embed` on ``(T', H', W')``) are added, then
pre-norm transformer blocks (:class:`~mmssl.core.transformer.Block`) and a final LayerNorm.

- ``forward(clip [B, T, 3, H, W])`` -> ``{"global": [B, D], "tokens": [B, N, D], "grid": (H', W')}``;
  ``global`` is the mean of the tokens (VideoMAE, as MAE's fine-tuning, pools by averaging) or a CLS
  token's output (``global_pool: cls``).
- ``forward_tokens(tokens [B, M, D])``: tokens that already carry their positions (any subset, any
  order) -> ``[B, P + M, D]`` (``P`` = 1 with a CLS token, else 0); the masked core encodes only the
  visible tubes with it.
- ``forward(frames [B, 3, H, W])`` and ``feature_map(frames) -> [B, D, H', W']``: one frame is
  encoded as a *static clip* (the frame repeated ``num_frames`` times, the input length the model is
  built for, so attention sees the ``T'`` time slots it was trained on), and the tokens of the ``T'``
  slots are averaged per spatial cell. This is the per-frame feature map the ``label_propagation``
  evaluator reads (``stride`` = ``p``); frames whose sides are not multiples of ``p`` lose their last
  ``H mod p`` rows and ``W mod p`` columns (the strided embedding drops them), which shifts the
  grid by less than one cell.

Positions are computed for the grid of each input (they are fixed, not learned), so a model built
for 64-px clips also encodes larger frames (e.g. DAVIS at 120 px).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.masked import init_mae_weights_
from mmssl.core.transformer import Block, sincos_pos_embed

GLOBAL_POOLS: tuple[str, ...] = ("mean", "cls")


def patchify_tubes(clips: Tensor, patch_size: int, tubelet_size: int) -> Tensor:
    """``[B, T, C, H, W]`` -> ``[B, N, t*p*p*C]``: one row per tubelet in token order (time-major, then
    row-major), each flattened as (frame in tubelet, row in patch, column in patch, channel)."""
    b, t_len, c, h, w = clips.shape
    p, t = patch_size, tubelet_size
    if t_len % t or h % p or w % p:
        raise ValueError(f"clip {t_len}x{h}x{w} is not a multiple of tubelets {t}x{p}x{p}")
    x = clips.reshape(b, t_len // t, t, c, h // p, p, w // p, p)
    # axes: b, T', t, c, H', p_r, W', p_c -> b, T', H', W', t, p_r, p_c, c
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)
    return x.reshape(b, (t_len // t) * (h // p) * (w // p), t * p * p * c)


def unpatchify_tubes(tubes: Tensor, patch_size: int, tubelet_size: int, grid: tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`patchify_tubes`: ``[B, N, t*p*p*C]`` on a ``(T', H', W')`` grid ->
    ``[B, T' t, C, H' p, W' p]``."""
    b, n, d = tubes.shape
    p, t = patch_size, tubelet_size
    gt, gh, gw = grid
    if gt * gh * gw != n or d % (t * p * p):
        raise ValueError(
            f"cannot unpatchify {n} tubes of {d} values onto a {gt}x{gh}x{gw} grid of {t}x{p}x{p}"
        )
    c = d // (t * p * p)
    x = tubes.reshape(b, gt, gh, gw, t, p, p, c)
    x = x.permute(0, 1, 4, 7, 2, 5, 3, 6)  # b, T', t, c, H', p_r, W', p_c
    return x.reshape(b, gt * t, c, gh * p, gw * p)


class TubeletEmbed(nn.Module):
    """``[B, T, C, H, W]`` -> (tokens ``[B, T' H' W', D]``, grid ``(T', H', W')``) by a ``(t, p, p)``
    Conv3d with stride ``(t, p, p)``: one linear map of each tubelet's voxels."""

    def __init__(self, patch_size: int, tubelet_size: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel, stride=kernel)

    def forward(self, clips: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        t_len, h, w = clips.shape[1], clips.shape[-2], clips.shape[-1]
        if t_len % self.tubelet_size or h < self.patch_size or w < self.patch_size:
            raise ValueError(
                f"video_vit takes clips of a multiple of {self.tubelet_size} frames of at least "
                f"{self.patch_size} px, got {t_len} frames of {h}x{w}"
            )
        x = self.proj(clips.transpose(1, 2))  # [B, C, T, H, W] -> [B, D, T', H', W']
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), grid


class VideoViT(nn.Module):
    """Space-time ViT over tubelets (see the module docstring).

    Args:
        img_size / num_frames: the clip size the model is built for (sets the decoder's token count
            in VideoMAE and the static-clip length of per-frame features).
        patch_size / tubelet_size: spatial and temporal size of a tubelet.
        embed_dim / depth / num_heads / mlp_ratio / qkv_bias: the transformer (``embed_dim`` divisible by
            6 for the 3-D sin-cos table and by ``num_heads``).
        global_pool: ``mean`` (VideoMAE) or ``cls`` (adds a CLS token, the one prefix token).
    """

    def __init__(
        self,
        img_size: int = 64,
        num_frames: int = 8,
        patch_size: int = 8,
        tubelet_size: int = 2,
        in_channels: int = 3,
        embed_dim: int = 192,
        depth: int = 4,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        global_pool: str = "mean",
    ) -> None:
        super().__init__()
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got '{global_pool}'")
        if embed_dim % 6 or embed_dim % num_heads:
            raise ValueError(
                f"video_vit embed_dim must be divisible by 6 (3-D sin-cos positions) and by num_heads "
                f"({num_heads}), got {embed_dim}"
            )
        if num_frames % tubelet_size or img_size % patch_size:
            raise ValueError(
                f"num_frames {num_frames} / img_size {img_size} must be multiples of tubelet_size "
                f"{tubelet_size} / patch_size {patch_size}"
            )
        self.img_size, self.num_frames = img_size, num_frames
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.global_pool = global_pool
        self.num_prefix_tokens = 1 if global_pool == "cls" else 0
        self.patch_embed = TubeletEmbed(patch_size, tubelet_size, in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if global_pool == "cls" else None
        # Fixed positions: a buffer (not trained, not checkpointed), recomputed for other grids.
        self.register_buffer(
            "pos_embed", sincos_pos_embed(embed_dim, self.grid).unsqueeze(0), persistent=False
        )
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.embed_dim = self.out_dim = embed_dim
        self.stride: int = patch_size
        self._init_weights()

    def _init_weights(self) -> None:
        # VideoMAE / MAE: the tubelet projection like a Linear (xavier on the flattened kernel), then
        # MAE's init of every Linear / LayerNorm (and the CLS token ~ N(0, 0.02)); without a CLS token
        # init_mae_weights_ is given a throwaway one so the shared routine is reused as it is.
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        token = self.cls_token if self.cls_token is not None else nn.Parameter(torch.zeros(1))
        init_mae_weights_(self, token)

    def pos_embed_for(self, grid: tuple[int, int, int]) -> Tensor:
        """``[1, T' H' W', D]`` fixed positions of a ``(T', H', W')`` grid."""
        if tuple(grid) == self.grid:
            return self.pos_embed
        return sincos_pos_embed(self.embed_dim, grid).unsqueeze(0).to(self.pos_embed.device)

    def tokenize(self, clips: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """Tubelet embeddings with their positions ``[B, N, D]`` and the grid ``(T', H', W')``."""
        tokens, grid = self.patch_embed(clips)
        return tokens + self.pos_embed_for(grid).to(tokens.dtype), grid

    def forward_tokens(self, tokens: Tensor) -> Tensor:
        """``[B, M, D]`` positioned tokens (any subset, any order) -> ``[B, P + M, D]``."""
        x = tokens
        if self.cls_token is not None:  # the CLS token has no position (MAE: an all-zero one)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def _pool(self, out: Tensor) -> Tensor:
        return out[:, 0] if self.cls_token is not None else out.mean(dim=1)

    def static_clips(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, num_frames, 3, H, W]``: each frame repeated (a still video)."""
        return frames.unsqueeze(1).expand(-1, self.num_frames, -1, -1, -1)

    def forward(self, x: Tensor) -> dict[str, Any]:
        if x.dim() == 5:
            tokens, grid = self.tokenize(x)
            out = self.forward_tokens(tokens)
            p = self.num_prefix_tokens
            return {"global": self._pool(out), "tokens": out[:, p:], "grid": grid[1:]}
        if x.dim() == 4:
            tokens, (gt, gh, gw) = self.tokenize(self.static_clips(x))
            out = self.forward_tokens(tokens)
            p = self.num_prefix_tokens
            # average the T' time slots of each spatial cell: [B, T' S, D] -> [B, S, D]
            cells = out[:, p:].reshape(x.shape[0], gt, gh * gw, -1).mean(dim=1)
            return {"global": self._pool(out), "tokens": cells, "grid": (gh, gw)}
        raise ValueError(f"video_vit takes [B, 3, H, W] or [B, T, 3, H, W], got {tuple(x.shape)}")

    def feature_map(self, frames: Tensor) -> Tensor:
        """``[N, 3, H, W]`` -> ``[N, D, H', W']`` (static-clip features, see the module docstring)."""
        out = self.forward(frames)
        h, w = out["grid"]
        return out["tokens"].transpose(1, 2).reshape(frames.shape[0], -1, h, w)


def video_vit(
    img_size: int = 64,
    num_frames: int = 8,
    patch_size: int = 8,
    tubelet_size: int = 2,
    embed_dim: int = 192,
    depth: int = 4,
    num_heads: int = 3,
    mlp_ratio: float = 4.0,
    global_pool: str = "mean",
) -> VideoViT:
    """A space-time ViT over ``tubelet_size x patch_size x patch_size`` tubelets (VideoMAE's encoder).

    ``img_size`` / ``num_frames``: the clip the model is built for (the dataset's ``frame_size`` and
    ``clip_len``). ``embed_dim``: divisible by 6 and ``num_heads`` (ViT-S: 384 / 12 / 6; the CPU
    default 192 / 4 / 3). ``global_pool``: ``mean`` of the tokens (VideoMAE) or a ``cls`` token.
    Per-frame feature maps (label propagation) encode each frame as a static clip.
    """
    return VideoViT(
        img_size,
        num_frames,
        patch_size,
        tubelet_size,
        3,
        embed_dim,
        depth,
        num_heads,
        mlp_ratio,
        True,
        global_pool,
    )


__all__ = ["TubeletEmbed", "VideoViT", "patchify_tubes", "unpatchify_tubes", "video_vit"]
