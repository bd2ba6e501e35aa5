"""Batch items of paired video + audio clips (:class:`~mmssl.modalities.audio.av_clips.AudioVisualClips`).

- pretraining (:class:`PairedItems`): ``{"image": float32 [3, S, S] (IMAGENET-normalised),
  "audio": float32 [S_a], "label": int, "index": i}``; one random frame of the clip, the audio
  window of ``clip_seconds`` centred on that frame's time (so picture and sound are simultaneous, as
  in audio-visual correspondence, Arandjelović & Zisserman 2017); with ``augment`` the frame gets a
  random resized crop (area 0.5-1) and a horizontal flip;
- held-out pairs: the same items, deterministic (middle frame);
- visual evaluation (:func:`frame_items`): ``{"input": middle frame, "label"}``;
- audio evaluation (:func:`clip_audio_items`): ``{"input": centre crop [S_a], "label"}`` (the input of
  ``audio_cnn``).

The evaluation items are :class:`~mmssl.data.LabelledItems` over one part of the clips
(:class:`ClipPart`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmssl.data import LabelledItems
from mmssl.data.keys import IMAGE, INDEX, LABEL
from mmssl.modalities.audio.av_clips import AudioVisualClips
from mmssl.modalities.audio.io import center_crop, crop_at
from mmssl.modalities.audio.keys import AUDIO
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD, eval_transform


def train_frame_transform(size: int) -> v2.Compose:
    """Random resized crop (area 0.5-1) + horizontal flip, then scale and IMAGENET normalisation."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
            v2.ToPureTensor(),
        ]
    )


class PairedItems(Dataset):
    """``{"image", "audio", "label", "index"}``: a frame and the simultaneous audio window (see module)."""

    def __init__(
        self, base: AudioVisualClips, clip_samples: int, *, train: bool, augment: bool = True
    ) -> None:
        self.base, self.clip_samples, self.train = base, int(clip_samples), train
        size = base.image_size
        self.transform = train_frame_transform(size) if train and augment else eval_transform(size)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames, times, audio, label = self.base[index]
        k = int(torch.randint(len(frames), (1,))) if self.train else len(frames) // 2
        centre = int(round(float(times[k]) * self.base.sample_rate))
        return {
            IMAGE: self.transform(frames[k]),
            AUDIO: crop_at(audio, self.clip_samples, centre),
            LABEL: int(label),
            INDEX: index,
        }


class ClipPart(Dataset):
    """One part of every clip with its label, ``(clips.<part>[i], label)``: ``part`` is ``"frames"``
    (uint8 ``[T, 3, S, S]``) or ``"audio"`` (the whole track)."""

    def __init__(self, clips: AudioVisualClips, part: str) -> None:
        self.clips, self.part = clips, part
        self.targets = clips.targets

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return getattr(self.clips, self.part)[index], self.clips.targets[index]


class MiddleFrame:
    """``transform(frames[T // 2])``: the middle frame of a clip's frames ``[T, 3, S, S]``."""

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        self.transform = transform

    def __call__(self, frames: Tensor) -> Tensor:
        return self.transform(frames[len(frames) // 2])


def frame_items(clips: AudioVisualClips) -> LabelledItems:
    """``{"input": middle frame (IMAGENET-normalised), "label"}``: visual evaluation items."""
    return LabelledItems(ClipPart(clips, "frames"), MiddleFrame(eval_transform(clips.image_size)))


def clip_audio_items(clips: AudioVisualClips, clip_samples: int) -> LabelledItems:
    """``{"input": centre crop of the audio [clip_samples], "label"}``: audio evaluation items."""
    return LabelledItems(
        ClipPart(clips, "audio"), functools.partial(center_crop, num_samples=int(clip_samples))
    )
