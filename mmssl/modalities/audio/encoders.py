"""Audio encoders, registered in ``mmssl.registry.ENCODERS`` with ``modality="audio"``.

``audio_cnn`` takes **waveforms** by default: ``[B, S]`` (or ``[B, 1, S]``) mono samples at
``sample_rate``, turned into a log-mel spectrogram by a built-in
:class:`~mmssl.modalities.audio.features.LogMel` front end. A 4-D input ``[B, 1, n_mels, T]`` is
taken as an already computed log-mel spectrogram (the front end is skipped). Output, as for every
encoder in the toolkit::

    {"global": [B, D], "tokens": [B, T', D]}

``tokens`` are time steps: the final feature map averaged over frequency (time stride
``hop_length * 2^(len(widths) - 1) * stem_stride`` samples); ``global`` pools them over time (mean,
or mean + max as in PANNs, Kong et al. 2020, which helps for short events in long clips).

The body is the PANNs-style "CNN on a log-mel image": per-mel-band BatchNorm of the input (the
spectrogram's scale differs a lot between bands), then conv3x3-BN-ReLU blocks with 2x2 average
pooling between them. ``spec_augment`` masks time and frequency bands of the log-mel in training mode
only, before the BatchNorm (:mod:`~mmssl.modalities.audio.spec_augment`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mmssl.modalities.audio.features import LogMel
from mmssl.modalities.audio.spec_augment import SpecAugment, SpecAugmentOptions
from mmssl.modalities.image.encoders import conv_stages

POOLS = ("mean", "mean_max")


class AudioCNN(nn.Module):
    """Small CNN on log-mel spectrograms with a built-in front end (see the module docstring); input
    waveforms ``[B, S]`` at ``sample_rate`` (or log-mel ``[B, 1, n_mels, T]``); ``out_dim = widths[-1]``.

    ``n_mels`` / ``n_fft`` / ``hop_length``: the log-mel front end (25 ms windows, 10 ms hop at 16 kHz
    by default). ``widths``: channels per block (2x2 average pooling between blocks).
    ``stem_stride``: stride of the first convolution (2 halves the cost). ``pool``: ``mean`` or
    ``mean_max`` over time steps for the global feature. ``spec_augment``: SpecAugment masks
    (:class:`~mmssl.modalities.audio.spec_augment.SpecAugmentOptions`; none by default), training only.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        widths: Sequence[int] = (32, 64, 128, 256),
        convs_per_block: int = 1,
        stem_stride: int = 1,
        pool: str = "mean",
        spec_augment: SpecAugmentOptions | None = None,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("audio_cnn needs at least one width")
        if pool not in POOLS:
            raise ValueError(f"unknown pool '{pool}'; choose one of {', '.join(POOLS)}")
        self.frontend = LogMel(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.spec_augment = SpecAugment(spec_augment)  # identity in eval mode
        self.input_norm = nn.BatchNorm2d(n_mels)  # one scale per mel band (applied with bands as channels)
        self.features = conv_stages(1, widths, convs_per_block, stem_stride, nn.AvgPool2d(2, ceil_mode=True))
        self.pool = pool
        self.n_mels = n_mels
        self.out_dim: int = int(widths[-1])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def spectrogram(self, x: Tensor) -> Tensor:
        """Waveform ``[B, S]`` / ``[B, 1, S]`` -> log-mel ``[B, 1, n_mels, T]``; 4-D input passes through."""
        if x.dim() == 4:
            if x.shape[1] != 1 or x.shape[2] != self.n_mels:
                raise ValueError(f"log-mel input must be [B, 1, {self.n_mels}, T], got {tuple(x.shape)}")
            return x
        if x.dim() in (2, 3):
            return self.frontend(x)
        raise ValueError(
            f"audio_cnn takes waveforms [B, S] / [B, 1, S] or log-mel [B, 1, M, T], got {tuple(x.shape)}"
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        spec = self.spec_augment(self.spectrogram(x))
        spec = self.input_norm(spec.transpose(1, 2)).transpose(1, 2)  # BN over mel bands
        fmap = self.features(spec)  # [B, D, f, t]
        tokens = fmap.mean(dim=2).transpose(1, 2)  # [B, t, D]: frequency averaged, one token per time step
        pooled = tokens.mean(dim=1)
        if self.pool == "mean_max":
            pooled = pooled + tokens.amax(dim=1)
        return {"global": pooled, "tokens": tokens}
