"""SpecAugment's time and frequency masking (Park et al., Interspeech 2019, Sec. 2), on log-mel spectrograms.

Where it runs, and why: the audio encoders take **waveforms** and compute their log-mel spectrogram in a
built-in front end (:class:`~mmssl.modalities.audio.features.LogMel`), so the spectrogram exists only
inside the encoder. Masking is therefore a module of the encoder's front end (``audio_cnn`` and
``audio_vit``, option ``encoder.spec_augment: {...}``), applied right after the log-mel and before the
per-band normalisation, **only while the module is in training mode**. Every evaluator extracts features
under ``eval()`` (:func:`mmssl.eval.features.eval_mode`), so evaluation never sees a mask. The two views
of a two-view method pass through the encoder in separate calls, so each view draws its own masks; a
BYOL / MoCo target network (a copy of the encoder in the same mode) masks its own input too, as the
augmentation of its view. A batch transform on the data side was the alternative; it would have needed
a second copy of the encoder's front-end settings (rate, FFT, hop, mels) that could silently disagree.

The masks (Park et al., Sec. 2; all draws independent per example)::

    frequency mask (x m_F):  f ~ U{0, ..., F},   f0 ~ U{0, ..., nu - f};   channels [f0, f0 + f) masked
    time mask      (x m_T):  t ~ U{0, ..., T'},  t0 ~ U{0, ..., tau - t};  frames   [t0, t0 + t) masked
                             with T' = min(T, floor(p * tau)) (the upper bound on a time mask)

``nu`` = mel channels, ``tau`` = frames. Masked cells are set to the example's mean log-mel value (over
all channels and frames, before masking): Park et al. mask with zero on mean-normalised features, i.e.
with the mean. Masks may overlap; a width of 0 masks nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.options import build_dataclass


@dataclass(frozen=True)
class SpecAugmentOptions:
    """``encoder.spec_augment``: ``freq_masks`` (m_F) bands of at most ``freq_width`` (F) mel channels and
    ``time_masks`` (m_T) bands of at most ``time_width`` (T) frames, a time band also at most
    ``time_ratio`` (p) of the frames. Park et al.'s LibriSpeech "LB" policy: F 27, m_F 1, T 100, p 1.0,
    m_T 1 (on 80 mels). All zero (the default): no masking."""

    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0
    time_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"spec_augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.time_ratio <= 1.0:
            raise ValueError(f"spec_augment.time_ratio must lie in [0, 1], got {self.time_ratio}")

    @property
    def enabled(self) -> bool:
        """Whether any mask can be non-empty."""
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)


def spec_augment_options(options: SpecAugmentOptions | Mapping[str, Any] | None) -> SpecAugmentOptions:
    """An encoder's ``spec_augment`` argument as options (a plain mapping when built from Python)."""
    if options is None:
        return SpecAugmentOptions()
    if isinstance(options, SpecAugmentOptions):
        return options
    return build_dataclass(SpecAugmentOptions, options, "encoder.spec_augment")


@dataclass
class SpecMasks:
    """Drawn bands: ``freq`` ``[B, m_F, 2]`` and ``time`` ``[B, m_T, 2]`` int64 rows ``(start, width)``."""

    freq: Tensor
    time: Tensor

    def cells(self, num_freq: int, num_time: int) -> Tensor:
        """Boolean ``[B, num_freq, num_time]``: True where some band covers the cell."""
        return band_cover(self.freq, num_freq)[:, :, None] | band_cover(self.time, num_time)[:, None, :]


def band_cover(bands: Tensor, length: int) -> Tensor:
    """``[B, K, 2]`` bands ``(start, width)`` -> boolean ``[B, length]``: covered by at least one band."""
    pos = torch.arange(length, device=bands.device)
    start, width = bands[..., :1], bands[..., 1:]
    inside = (pos >= start) & (pos < start + width)  # [B, K, length]
    return (
        inside.any(dim=1)
        if bands.shape[1]
        else torch.zeros(bands.shape[0], length, dtype=torch.bool, device=bands.device)
    )


def draw_bands(
    batch: int, count: int, max_width: int, length: int, generator: torch.Generator | None, device: Any
) -> Tensor:
    """``count`` bands per example: width ``w ~ U{0..min(max_width, length)}``, then start
    ``~ U{0..length - w}``."""
    max_width = min(int(max_width), int(length))
    u = torch.rand(batch, count, 2, generator=generator)
    width = (u[..., 0] * (max_width + 1)).long().clamp(max=max_width)
    start = (u[..., 1] * (length - width + 1).double()).long().clamp(min=0)
    start = torch.minimum(start, length - width)
    return torch.stack([start, width], dim=-1).to(device)


class SpecAugment(nn.Module):
    """Time and frequency masking of ``[B, 1, n_mels, frames]`` log-mel spectrograms in training mode
    (the module docstring); the identity in eval mode or when the options mask nothing."""

    def __init__(self, options: SpecAugmentOptions | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.options = spec_augment_options(options)

    def draw(
        self,
        batch: int,
        num_freq: int,
        num_time: int,
        generator: torch.Generator | None = None,
        device: Any = None,
    ) -> SpecMasks:
        """Draw every band of a batch (frequency bands first, then time bands)."""
        o = self.options
        time_bound = min(o.time_width, math.floor(o.time_ratio * num_time))
        return SpecMasks(
            freq=draw_bands(batch, o.freq_masks, o.freq_width, num_freq, generator, device),
            time=draw_bands(batch, o.time_masks, time_bound, num_time, generator, device),
        )

    @staticmethod
    def apply(spec: Tensor, masks: SpecMasks) -> Tensor:
        """``spec`` with every covered cell set to that example's mean value (computed before masking)."""
        if spec.dim() != 4 or spec.shape[1] != 1:
            raise ValueError(f"SpecAugment takes log-mel [B, 1, n_mels, frames], got {tuple(spec.shape)}")
        covered = masks.cells(spec.shape[2], spec.shape[3]).unsqueeze(1)
        fill = spec.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(covered, fill.expand_as(spec), spec)

    def forward(self, spec: Tensor) -> Tensor:
        if not self.training or not self.options.enabled:
            return spec
        return self.apply(spec, self.draw(spec.shape[0], spec.shape[2], spec.shape[3], device=spec.device))

    def extra_repr(self) -> str:
        return repr(self.options)
