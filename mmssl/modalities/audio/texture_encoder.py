"""``texture_stats``: sound-texture statistics as a fixed, untrained encoder, for comparisons on any split.

The statistics of McDermott & Simoncelli (Neuron 2011; :mod:`~mmssl.modalities.audio.texture_stats`) of
each clip in a batch, concatenated group by group in ``GROUPS`` order (envelope means, coefficients of
variation, skews, kurtoses, cross-band correlations, modulation powers)::

    forward(wave [B, S]) = {"global": [B, 4 K + K (K - 1) / 2 + K M]}     (K bands, M modulation bands)

1,155 numbers with the defaults (30 bands, 20 modulation bands). No parameter is learnt, so wherever a
recipe evaluates an encoder (``few_shot``, ``linear``, ``knn`` on ``eval_train`` / ``eval_test``), this
one gives the hand-designed baseline on exactly the same split: e.g. as a retrained baseline with no
training, ``eval.baselines: [{texture_stats: ["encoder={name: texture_stats, sample_rate: 8000}",
"train.steps=0"]}]``. The linear probes standardise every feature on the training split
(``normalize: true``), which the statistics need (their scales differ by orders of magnitude); cosine kNN
does not, so read kNN figures of this encoder with care. A digitally silent clip (e.g. all zero padding)
has no texture: its features are zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmssl.modalities.audio.texture_stats import GROUPS, TextureConfig, texture_statistics


def texture_dim(config: TextureConfig) -> int:
    """Length of the concatenated statistics: ``4 K + K (K - 1) / 2 + K M``."""
    k, m = config.num_bands, config.num_mod_bands
    return 4 * k + k * (k - 1) // 2 + k * m


class TextureStatsEncoder(nn.Module):
    """Texture statistics of each clip (the module docstring); waveforms ``[B, S]`` / ``[B, 1, S]`` at
    ``sample_rate``. The other options are :class:`~mmssl.modalities.audio.texture_stats.TextureConfig`'s
    (``high_hz`` and ``mod_high_hz`` are clipped to the Nyquist frequency). ``out_dim``: see
    :func:`texture_dim`."""

    def __init__(
        self,
        sample_rate: int = 16000,
        num_bands: int = 30,
        low_hz: float = 20.0,
        high_hz: float = 10000.0,
        envelope_rate: int | None = 400,
        compression: float = 0.3,
        num_mod_bands: int = 20,
        mod_low_hz: float = 0.5,
        mod_high_hz: float = 200.0,
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.config = TextureConfig(
            num_bands, low_hz, high_hz, envelope_rate, compression, num_mod_bands, mod_low_hz, mod_high_hz
        )
        self.out_dim: int = texture_dim(self.config)

    def clip_features(self, wave: Tensor) -> Tensor:
        """float64 ``[out_dim]`` of one mono clip ``[S]``; zeros for a silent clip."""
        if not wave.abs().amax() > 0:
            return torch.zeros(self.out_dim, dtype=torch.float64)
        stats = texture_statistics(wave.detach().cpu(), self.sample_rate, self.config)
        return torch.cat([stats[g] for g in GROUPS])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"texture_stats takes waveforms [B, S] or [B, 1, S], got {tuple(x.shape)}")
        feats = torch.stack([self.clip_features(wave) for wave in x.float()])
        return {"global": feats.to(device=x.device, dtype=torch.float32)}


__all__ = ["TextureStatsEncoder", "texture_dim"]
