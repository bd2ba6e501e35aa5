"""``audio_vit``: a ViT on log-mel spectrogram patches, Audio-MAE's encoder (Huang et al., NeurIPS 2022,
Sec. 3.1).

A waveform ``[B, S]`` (or a log-mel ``[B, 1, n_mels, T]``) becomes tokens in four steps::

    spec    = norm(SpecAugment(LogMel(x)))[..., :T_p]     # [B, 1, M, T_p], T_p = p * floor(T / p)
    patches = patchify(spec)                              # [B, N, p*p], N = (M / p) * (T_p / p)
    tokens  = patches W + b + pos                         # [B, N, D]
    out     = LN(Blocks([CLS; tokens]))                   # [B, 1 + N, D]

- **Patches**: non-overlapping ``p x p`` squares of the spectrogram, numbered row-major over the
  ``(frequency, time)`` grid (``n = row * cols + col``, row 0 = the lowest mel band), each flattened as
  (mel channel in patch, frame in patch). Audio-MAE uses 16 x 16 patches of 128 mels x 1024 frames; on
  the short clips here 8 x 8 patches of 40-64 mels give grids of 5-8 x 12.
- **Positions**: fixed 2-D sine-cosine on the ``(rows, cols)`` patch grid
  (:func:`~mmssl.core.transformer.sincos_pos_embed_2d`; the frequency row takes half the channels, the
  time column the other half; CLS gets zeros). The table is a function of the grid, so clips of any
  length work: it is computed for each grid met (and cached).
- **Normalisation**: BatchNorm over mel bands **without** learnable scale and shift (running statistics
  in eval mode): Audio-MAE normalises by dataset mean and variance; here the statistics are learnt
  while training. No parameter may act before the patches, because the masked-modelling targets are
  these normalised patches (a learnable scale could shrink the targets to nothing).
- **SpecAugment** (``spec_augment``, training mode only; :mod:`~mmssl.modalities.audio.spec_augment`),
  off by default (Audio-MAE pretrains without it; it is for two-view training).

``forward(x)`` returns ``{"global": [B, D], "tokens": [B, N, D]}``; ``global`` is the mean of the patch
outputs (``global_pool="mean"``, as Audio-MAE's fine-tuning) or the CLS output (``"cls"``).
``forward_tokens(tokens)`` runs CLS + blocks + norm on any subset of position-carrying tokens, which is
how the masked-modelling core encodes the visible patches only (``audio_mae``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmssl.core.masked import init_mae_weights_
from mmssl.core.transformer import Block, sincos_pos_embed_2d
from mmssl.modalities.audio.features import LogMel
from mmssl.modalities.audio.spec_augment import SpecAugment, SpecAugmentOptions

POOLS = ("mean", "cls")


def patchify_spectrogram(spec: Tensor, patch_size: int) -> Tensor:
    """``[B, 1, M, T]`` -> ``[B, (M/p)(T/p), p*p]``: patches row-major over (frequency, time), each
    flattened as (channel in patch, frame in patch). ``M`` and ``T`` must be multiples of ``p``."""
    b, c, m, t = spec.shape
    p = patch_size
    if c != 1 or m % p or t % p:
        raise ValueError(
            f"cannot patchify a [B, 1, M, T] spectrogram {tuple(spec.shape)} into {p}x{p} patches"
        )
    x = spec.reshape(b, m // p, p, t // p, p)
    return x.permute(0, 1, 3, 2, 4).reshape(b, (m // p) * (t // p), p * p)


def unpatchify_spectrogram(patches: Tensor, patch_size: int, grid: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify_spectrogram`: ``[B, rows * cols, p*p]`` -> ``[B, 1, rows*p, cols*p]``."""
    b, n, d = patches.shape
    rows, cols = grid
    p = patch_size
    if rows * cols != n or d != p * p:
        raise ValueError(f"cannot unpatchify {n} tokens of {d} values into a {rows}x{cols} grid of {p}x{p}")
    x = patches.reshape(b, rows, cols, p, p)
    return x.permute(0, 1, 3, 2, 4).reshape(b, 1, rows * p, cols * p)


class AudioViT(nn.Module):
    """ViT on log-mel patches with fixed 2-D sin-cos positions and a CLS token (the module docstring).

    ``sample_rate`` / ``n_mels`` / ``n_fft`` / ``hop_length``: the log-mel front end (window
    ``min(400, n_fft)``). ``patch_size``: side ``p`` of the square patches (``n_mels`` must be a
    multiple). ``embed_dim`` / ``depth`` / ``num_heads`` / ``mlp_ratio``: the transformer
    (``embed_dim`` a multiple of 4 for the 2-D positions). ``global_pool``: ``mean`` or ``cls``.
    ``spec_augment``: SpecAugment masks in training mode (none by default). ``out_dim = embed_dim``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        patch_size: int = 8,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        global_pool: str = "mean",
        spec_augment: SpecAugmentOptions | None = None,
    ) -> None:
        super().__init__()
        if global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(POOLS)}, got '{global_pool}'")
        if patch_size < 1 or n_mels % patch_size:
            raise ValueError(f"n_mels {n_mels} is not a multiple of patch_size {patch_size}")
        if embed_dim % 4 or embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be a multiple of 4 and of num_heads {num_heads}")
        self.frontend = LogMel(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.spec_augment = SpecAugment(spec_augment)
        # No affine parameters: the masked-modelling targets are the normalised patches (module docstring).
        self.input_norm = nn.BatchNorm2d(n_mels, affine=False)
        self.patch_embed = nn.Linear(patch_size * patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.n_mels, self.hop_length, self.patch_size = n_mels, hop_length, patch_size
        self.embed_dim, self.global_pool = embed_dim, global_pool
        self.out_dim: int = embed_dim
        self._positions: dict[tuple[int, int], Tensor] = {}
        init_mae_weights_(self, self.cls_token)  # MAE's init: CLS ~ N(0, 0.02), Linear xavier, LN (1, 0)

    # --------------------------------------------------------------------------- spectrogram and grid

    def num_frames(self, num_samples: int) -> int:
        """Frames kept for a clip of ``num_samples``: the front end's ``1 + S // hop``, cut to a multiple
        of ``p``."""
        return self.frontend.num_frames(int(num_samples)) // self.patch_size * self.patch_size

    def grid_for(self, num_samples: int) -> tuple[int, int]:
        """``(rows, cols)`` of the patch grid of a clip of ``num_samples``."""
        return self.n_mels // self.patch_size, self.num_frames(num_samples) // self.patch_size

    def spectrogram(self, x: Tensor) -> Tensor:
        """Waveform ``[B, S]`` / ``[B, 1, S]`` (or log-mel ``[B, 1, n_mels, T]``) -> the normalised log-mel
        ``[B, 1, n_mels, T_p]`` the patches are cut from (SpecAugment first in training mode)."""
        if x.dim() == 4:
            if x.shape[1] != 1 or x.shape[2] != self.n_mels:
                raise ValueError(f"log-mel input must be [B, 1, {self.n_mels}, T], got {tuple(x.shape)}")
            spec = x
        elif x.dim() in (2, 3):
            spec = self.frontend(x)
        else:
            raise ValueError(
                f"audio_vit takes waveforms [B, S] / [B, 1, S] or log-mel [B, 1, M, T], got {tuple(x.shape)}"
            )
        keep = spec.shape[-1] // self.patch_size * self.patch_size
        if keep == 0:
            raise ValueError(
                f"a clip of {spec.shape[-1]} frames is shorter than one {self.patch_size}-frame patch"
            )
        spec = self.spec_augment(spec[..., :keep])
        return self.input_norm(spec.transpose(1, 2)).transpose(1, 2)  # BatchNorm over mel bands

    def patchify(self, spec: Tensor) -> Tensor:
        """``[B, 1, M, T_p]`` -> ``[B, N, p*p]`` (:func:`patchify_spectrogram`)."""
        return patchify_spectrogram(spec, self.patch_size)

    def unpatchify(self, patches: Tensor, grid: tuple[int, int]) -> Tensor:
        return unpatchify_spectrogram(patches, self.patch_size, grid)

    def positions(self, grid: tuple[int, int], like: Tensor) -> Tensor:
        """``[1 + rows * cols, D]`` fixed sin-cos positions (CLS row first, zeros) on ``like``'s device."""
        key = (int(grid[0]), int(grid[1]))
        if key not in self._positions:
            self._positions[key] = sincos_pos_embed_2d(self.embed_dim, key, cls_token=True)
        return self._positions[key].to(device=like.device, dtype=like.dtype)

    # -------------------------------------------------------------------------------------- tokens

    def tokenize(self, spec: Tensor) -> Tensor:
        """Patch embeddings with their positions, ``[B, N, D]``, of a :meth:`spectrogram` output."""
        grid = (spec.shape[2] // self.patch_size, spec.shape[3] // self.patch_size)
        tokens = self.patch_embed(self.patchify(spec))
        return tokens + self.positions(grid, tokens)[1:]

    def forward_tokens(self, tokens: Tensor) -> Tensor:
        """``[B, K, D]`` position-carrying patch tokens (any subset, any order) -> ``[B, 1 + K, D]``:
        CLS (position zero) prepended, blocks, final norm."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = self.forward_tokens(self.tokenize(self.spectrogram(x)))
        pooled = out[:, 1:].mean(dim=1) if self.global_pool == "mean" else out[:, 0]
        return {"global": pooled, "tokens": out[:, 1:]}


__all__ = ["AudioViT", "patchify_spectrogram", "unpatchify_spectrogram"]
