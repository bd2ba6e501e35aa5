"""Audio-MAE (Huang et al., NeurIPS 2022): masked modelling of log-mel spectrogram patches.

A configuration of the core :class:`~mmssl.core.masked.MaskedModel`; this adapter only says what a token
is (an ``audio_vit`` patch of the normalised log-mel with its 2-D position) and what it is reconstructed
as (the same patch's ``p * p`` normalised log-mel values)::

    spec  = encoder.spectrogram(wave)              # normalised log-mel [B, 1, M, T_p], computed once
    mask  = random_mask(B, N, ratio)               # Audio-MAE's unstructured masking, ratio 0.8
    z     = encoder.forward_tokens(tokenize(spec)[ids_keep])      # CLS + the ~20 % visible patches
    y_hat = decoder(z, mask)                       # mask tokens + fixed 2-D sin-cos positions
    L     = mean over masked patches of ||y_hat - norm(patchify(spec))||^2 / (p * p)

``norm``: each target patch standardised by its own mean and variance (``norm_pix_loss``, as MAE and
Audio-MAE's pretraining runs). Kept from the paper: random (unstructured) masking at 0.8, the best of
its masking ablations for pretraining; MSE on masked patches only; a light decoder discarded after
pretraining; mean-pooled encoder outputs as the representation. Changed: the decoder is the core's
global-attention :class:`~mmssl.core.masked.MaskedDecoder` (Audio-MAE's best uses local, shifted-window
attention in the decoder; its "global" variant is this one), and the sizes suit a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mmssl.core.masked import MaskedDecoder, MaskedModel
from mmssl.core.masking import TokenMasker
from mmssl.core.transformer import sincos_pos_embed_2d
from mmssl.data import DataBundle
from mmssl.data.shards import ShardStream
from mmssl.errors import ConfigError
from mmssl.modalities.audio.keys import AUDIO


def _check_audio_vit(encoder: nn.Module) -> None:
    needed = ("spectrogram", "tokenize", "forward_tokens", "patchify", "grid_for", "patch_size")
    missing = [a for a in needed if not hasattr(encoder, a)]
    if missing:
        raise ConfigError(
            f"audio_mae needs the audio_vit encoder (it exposes {', '.join(needed)}); "
            f"{type(encoder).__name__} lacks {', '.join(missing)}"
        )
    spec_augment = getattr(encoder, "spec_augment", None)
    if spec_augment is not None and spec_augment.options.enabled:
        raise ConfigError(
            "audio_mae masks patches itself: switch the encoder's spec_augment off (its masked bands would "
            "become reconstruction targets)"
        )


class AudioMAE(MaskedModel):
    """:class:`MaskedModel` over ``audio_vit`` spectrogram patches (see the module docstring).

    Args:
        encoder: an ``audio_vit`` (:class:`~mmssl.modalities.audio.vit.AudioViT`).
        grid: ``(rows, cols)`` of the patch grid of a pretraining clip (fixes the decoder's positions).
        mask_ratio: share of patches hidden per clip.
        norm_pix_loss: per-patch normalised targets.
        decoder_dim / decoder_depth / decoder_heads / decoder_mlp_ratio: the light decoder.
    """

    consumes = frozenset({AUDIO})

    def __init__(
        self,
        encoder: nn.Module,
        *,
        grid: tuple[int, int],
        mask_ratio: float = 0.8,
        norm_pix_loss: bool = True,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        decoder_mlp_ratio: float = 4.0,
    ) -> None:
        _check_audio_vit(encoder)
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"method.mask_ratio must lie in (0, 1), got {mask_ratio}")
        rows, cols = int(grid[0]), int(grid[1])
        p = encoder.patch_size
        decoder = MaskedDecoder(
            in_dim=encoder.out_dim,
            out_dim=p * p,
            num_tokens=rows * cols,
            embed_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
            mlp_ratio=decoder_mlp_ratio,
            pos_embed=sincos_pos_embed_2d(decoder_dim, (rows, cols), cls_token=False),
            num_prefix_tokens=1,
        )
        super().__init__(
            encoder,
            tokenize=encoder.tokenize,
            encode_visible=encoder.forward_tokens,
            targets=encoder.patchify,
            decoder=decoder,
            masker=TokenMasker("random", mask_ratio),
            norm_target=norm_pix_loss,
            input_key=AUDIO,
        )
        self.grid = (rows, cols)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        """The spectrogram is computed once per batch; tokens and targets are both cut from it."""
        if AUDIO not in batch:
            raise KeyError(
                f"audio_mae reads batch['{AUDIO}'] but the batch has {sorted(batch)} (use views: null)"
            )
        spec = self.encoder.spectrogram(batch[AUDIO])
        grid = (spec.shape[2] // self.encoder.patch_size, spec.shape[3] // self.encoder.patch_size)
        if grid != self.grid:
            raise ValueError(f"audio_mae was built for a {self.grid} patch grid, the batch gives {grid}")
        pred, mask = self.reconstruct(spec)
        return {"loss": self.loss(pred, self.targets(spec), mask)}


def _first_item(pretrain: Dataset) -> Any:
    """The first pretraining item: ``pretrain[0]``, or the first of a streamed shard set (which cannot be
    read by index; the block read for it is let go, so that data-loader workers do not inherit it)."""
    if not isinstance(pretrain, ShardStream):
        return pretrain[0]
    item = next(iter(pretrain))
    pretrain.samples.hold({})
    return item


def _clip_samples(data: DataBundle | None, clip_samples: int | None) -> int:
    """Samples per pretraining clip: the option, else the length of the first pretraining item's audio."""
    if clip_samples is not None:
        return int(clip_samples)
    if data is None:
        raise ConfigError("audio_mae needs the data (or method.clip_samples) to size its patch grid")
    with torch.random.fork_rng(devices=[]):  # reading an item draws a random crop: leave the stream as it was
        item = _first_item(data.pretrain)
    if not isinstance(item, dict) or AUDIO not in item:
        raise ConfigError(f"audio_mae needs single clips in the batch ('{AUDIO}'): set data.views: null")
    return int(torch.as_tensor(item[AUDIO]).shape[-1])


def audio_mae(
    encoder: nn.Module,
    data: DataBundle | None = None,
    mask_ratio: float = 0.8,
    norm_pix_loss: bool = True,
    decoder_dim: int = 128,
    decoder_depth: int = 2,
    decoder_heads: int = 4,
    decoder_mlp_ratio: float = 4.0,
    clip_samples: int | None = None,
) -> AudioMAE:
    """Audio-MAE: hide a random ``mask_ratio`` (0.8) of the log-mel patches per clip, encode the rest,
    reconstruct the hidden ones (MSE on them, targets normalised per patch with ``norm_pix_loss``).

    Needs the ``audio_vit`` encoder and single clips (``data.views: null``). The decoder (Audio-MAE:
    512 wide, 16 blocks) is discarded after pretraining; the defaults here (128 wide, 2 blocks, 4 heads)
    suit a CPU. ``clip_samples``: samples per pretraining clip, which fixes the patch grid (default:
    read from the data's first pretraining item).
    """
    _check_audio_vit(encoder)
    grid = encoder.grid_for(_clip_samples(data, clip_samples))
    return AudioMAE(
        encoder,
        grid=grid,
        mask_ratio=mask_ratio,
        norm_pix_loss=norm_pix_loss,
        decoder_dim=decoder_dim,
        decoder_depth=decoder_depth,
        decoder_heads=decoder_heads,
        decoder_mlp_ratio=decoder_mlp_ratio,
    )


__all__ = ["AudioMAE", "audio_mae"]
