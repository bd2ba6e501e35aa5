"""Log-mel spectrogram front end (``torchaudio.transforms.MelSpectrogram`` followed by a log).

``LogMel`` maps a waveform batch ``[B, S]`` (also ``[S]`` or ``[B, 1, S]``) to ``[B, 1, n_mels, T]``
with ``T = 1 + S // hop_length`` (centred frames), the image-like layout 2-D CNNs take:
``log(mel_power + eps)``. Defaults are the common speech / sound-event setting at 16 kHz: 25 ms
Hann windows (400 samples), 10 ms hop (160), 512-point FFT, 64 mel bands from 0 Hz to Nyquist.
``eps = 1e-6`` floors the log so digital silence in padding gives a finite value (-13.8).
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn


class LogMel(nn.Module):
    """Waveform -> log-mel power spectrogram ``[B, 1, n_mels, frames]`` (see the module docstring)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int | None = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.n_mels, self.eps = sample_rate, hop_length, n_mels, eps
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            # 25 ms at 16 kHz, shortened to n_fft when the FFT is smaller (a window cannot exceed it).
            win_length=None if win_length is None else min(win_length, n_fft),
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
        )

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length

    def forward(self, wave: Tensor) -> Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        elif wave.dim() == 3 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if wave.dim() != 2:
            raise ValueError(f"LogMel takes [S], [B, S] or [B, 1, S] waveforms, got {tuple(wave.shape)}")
        # The STFT runs in float32 even under autocast: bf16 power spectra lose the quiet bands.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = self.mel(wave.float())
        return torch.log(spec + self.eps).unsqueeze(1)
