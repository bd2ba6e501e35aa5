"""Two random views of one clip for two-view audio pretraining (COLA, BYOL-A), as typed recipe options.

``data: {views: crops, view_options: {gain_db: 6, mix_ratio: 0.4}}`` gives each pretraining item two
views of its clip (``{"views": [v1, v2], "index": i}``), each drawn independently on the waveform:

1. **random crop** of ``clip_seconds`` (the dataset's option): segments of one clip are positives, as in
   COLA (Saeed et al., ICASSP 2021, Sec. 2); a clip shorter than the crop sits at a random offset in a
   zero window;
2. **random gain** ``g_dB ~ U[-gain_db, +gain_db]``, amplitude factor ``10^(g_dB / 20)`` (so
   ``20 log10(|v| / |crop|) = g_dB``): loudness alone must not tell clips apart (BYOL-A v2's random
   linear fader plays the same role);
3. **background mixing** (BYOL-A, Niizumi et al., IJCNN 2021, Sec. 3.2 "Mixup"): with
   ``r ~ U[0, mix_ratio]`` and ``n`` a random crop of a clip drawn uniformly from the training clips
   (the "pool"; it may rarely be the clip itself, probability 1 / N; a streamed shard set's pool is the
   block being streamed, see :mod:`~mmssl.modalities.audio.shards`)::

       v = (1 - r) * g * crop(x) + r * n

   BYOL-A mixes in the linear-power domain of the log-mel, ``log((1 - l) e^x + l e^n)`` with
   ``l ~ U[0, 0.4]``, drawing ``n`` from a FIFO bank of past inputs; mixing waveforms gives the same
   kind of background at a random level (for independent signals the expected power is
   ``(1 - r)^2 P_x + r^2 P_n``), and a clip from the training set is a sample of the same distribution
   as a past input. ``mix_ratio: 0`` (default) mixes nothing and draws nothing.

SpecAugment's time and frequency masks act on the log-mel, which exists only inside the encoder: they
are an encoder option (``encoder.spec_augment``, :mod:`~mmssl.modalities.audio.spec_augment`), active in
training mode only. With the default options the views are exactly the earlier ``views: crops``
(gain +-6 dB, no mixing; the same random draws in the same order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from mmssl.options import build_dataclass


@dataclass(frozen=True)
class AudioViewOptions:
    """``data.view_options`` for ``views: crops``: ``gain_db`` (random gain in ``[-gain_db, +gain_db]``
    dB) and ``mix_ratio`` (largest share ``r`` of a background clip, ``r ~ U[0, mix_ratio]``; BYOL-A:
    0.4; 0 = off). See the module docstring."""

    gain_db: float = 6.0
    mix_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.gain_db < 0:
            raise ValueError(f"view_options.gain_db must be >= 0, got {self.gain_db}")
        if not 0.0 <= self.mix_ratio <= 1.0:
            raise ValueError(f"view_options.mix_ratio must lie in [0, 1], got {self.mix_ratio}")


def audio_view_options(options: AudioViewOptions | Mapping[str, Any] | None) -> AudioViewOptions | None:
    """The recipe's ``view_options`` as :class:`AudioViewOptions` (a plain mapping when built from Python)."""
    if options is None or isinstance(options, AudioViewOptions):
        return options
    return build_dataclass(AudioViewOptions, options, "data.view_options")


def crop_at_offset(wave: Tensor, num_samples: int, offset: int) -> Tensor:
    """``num_samples`` of ``[..., S]`` starting at ``offset`` (``S >= num_samples``), or, for a shorter
    clip, the clip placed at ``offset`` inside a zero window of ``num_samples``."""
    length = wave.shape[-1]
    if length >= num_samples:
        return wave[..., offset : offset + num_samples]
    return F.pad(wave, (offset, num_samples - length - offset))


def draw_offset(length: int, num_samples: int) -> int:
    """A uniform offset for :func:`crop_at_offset` (the draw of
    :func:`~mmssl.modalities.audio.io.random_crop`)."""
    slack = abs(length - num_samples)
    return int(torch.randint(slack + 1, (1,))) if slack else 0


@dataclass(frozen=True)
class ViewDraw:
    """The random numbers of one view: crop ``offset``, ``gain_db``, mixing ``ratio`` and the background
    crop ``noise`` (``[num_samples]``; None when nothing is mixed)."""

    offset: int
    gain_db: float
    ratio: float = 0.0
    noise: Tensor | None = None


class AudioCropViews:
    """``views(wave [S]) -> [v1, ..., v_num_views]``, each ``[num_samples]``: crop, gain, background mix
    (the module docstring). ``pool``: the training clips (``pool[j] = (wave, label)``), needed when
    ``options.mix_ratio > 0``. Draws come from torch's global generator (seeded per sample by the trainer).
    """

    def __init__(
        self,
        num_samples: int,
        options: AudioViewOptions | None = None,
        pool: Dataset | None = None,
        num_views: int = 2,
    ) -> None:
        self.num_samples, self.options, self.num_views = (
            int(num_samples),
            options or AudioViewOptions(),
            num_views,
        )
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        # a pool's length is checked when a clip is drawn: a streamed set's pool (the block being
        # streamed, mmssl.modalities.audio.shards.HeldBlock) is empty until the stream starts
        if self.options.mix_ratio > 0 and pool is None:
            raise ValueError("background mixing (view_options.mix_ratio > 0) needs a pool of clips")
        self.pool = pool

    def draw(self, length: int) -> ViewDraw:
        """Draw one view's numbers for a clip of ``length`` samples: gain, crop, then (if mixing) the ratio,
        the background clip and its crop, in this order."""
        gain_db = (torch.rand(()).item() * 2 - 1) * self.options.gain_db
        offset = draw_offset(length, self.num_samples)
        if self.options.mix_ratio <= 0:
            return ViewDraw(offset, gain_db)
        ratio = torch.rand(()).item() * self.options.mix_ratio
        if not len(self.pool):  # type: ignore[arg-type]
            raise ValueError("background mixing (view_options.mix_ratio > 0) needs a non-empty pool of clips")
        other = self.pool[int(torch.randint(len(self.pool), (1,)))][0]  # type: ignore[index, arg-type]
        noise = crop_at_offset(other, self.num_samples, draw_offset(other.shape[-1], self.num_samples))
        return ViewDraw(offset, gain_db, ratio, noise)

    def apply(self, wave: Tensor, draw: ViewDraw) -> Tensor:
        """``(1 - r) * 10^(g_dB / 20) * crop(wave) + r * noise`` (just the gained crop without noise)."""
        view = crop_at_offset(wave, self.num_samples, draw.offset) * 10 ** (draw.gain_db / 20)
        if draw.noise is None:
            return view
        return (1 - draw.ratio) * view + draw.ratio * draw.noise

    def view(self, wave: Tensor) -> Tensor:
        return self.apply(wave, self.draw(wave.shape[-1]))

    def __call__(self, wave: Tensor) -> list[Tensor]:
        return [self.view(wave) for _ in range(self.num_views)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_samples={self.num_samples}, {self.options})"


__all__ = ["AudioCropViews", "AudioViewOptions", "ViewDraw", "audio_view_options", "crop_at_offset"]
