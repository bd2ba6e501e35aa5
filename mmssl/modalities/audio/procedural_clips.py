"""``procedural_audio``: the built-in ambient sound textures as a labelled audio-only set, made in memory.

Clip ``i`` of a split has class ``i % num_classes`` and is
:func:`~mmssl.modalities.audio.procedural.synthesize_texture` of ``SOUND_CLASSES[class]`` drawn from
:func:`~mmssl.modalities.audio.procedural.clip_rng` ``(seed, split, i)``: the same sound as the wav of clip
``i`` of ``procedural_audio_visual`` with the same parameters (before its 16-bit rounding), without
writing any file or video. Ten textures (rain, wind, engine, crowd, stream, fan, clock, birds, traffic,
keyboard) that differ in spectral envelope and temporal structure, jittered per clip and normalised to
one RMS level. Items: :mod:`mmssl.modalities.audio.crops` (two-view crops with ``views: crops``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.data.source import data_source
from mmssl.errors import DataError
from mmssl.modalities.audio.crops import audio_bundle, pretrain_keys
from mmssl.modalities.audio.procedural import SOUND_CLASSES, clip_rng, synthesize_texture
from mmssl.modalities.audio.views import AudioViewOptions


class SynthesizedClips(Dataset):
    """``(wave float32 [S], label)`` of ``per_class * num_classes`` procedural texture clips of one split,
    synthesised once at construction (the attributes :func:`audio_bundle` reads, as ``AudioClips``)."""

    def __init__(
        self, split: str, per_class: int, num_classes: int, duration_s: float, sample_rate: int, seed: int
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.targets = [i % num_classes for i in range(per_class * num_classes)]
        self.waves: list[Tensor] = [
            torch.from_numpy(
                synthesize_texture(
                    SOUND_CLASSES[label], clip_rng(seed, split, i), duration_s, self.sample_rate
                )
            )
            for i, label in enumerate(self.targets)
        ]
        self.class_names = [SOUND_CLASSES[k].name for k in range(num_classes)]
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.waves[index], self.targets[index]


@data_source(produces=pretrain_keys)
def procedural_audio(
    num_classes: int = 10,
    train_per_class: int = 24,
    test_per_class: int = 8,
    duration_s: float = 2.0,
    clip_seconds: float = 1.0,
    sample_rate: int = 16000,
    views: str | None = None,
    view_options: AudioViewOptions | None = None,
    seed: int = 0,
) -> DataBundle:
    """Built-in ambient sound textures (the module docstring), ``num_classes`` of the ten, no download.

    ``train_per_class`` / ``test_per_class`` clips of ``duration_s`` seconds per class; pretraining and
    evaluation crops of ``clip_seconds``. ``views``: null (one random crop per clip, e.g. for
    ``audio_mae``) or ``crops`` (two views, for ``simclr`` / ``moco`` / ``byol``); ``view_options`` as for
    ``fsdd``. Every clip depends only on ``(seed, split, index)``.
    """
    if not 2 <= num_classes <= len(SOUND_CLASSES):
        raise DataError(f"num_classes must be in [2, {len(SOUND_CLASSES)}], got {num_classes}")
    if train_per_class < 1 or test_per_class < 1 or duration_s <= 0:
        raise DataError("need train_per_class, test_per_class >= 1 and duration_s > 0")
    train = SynthesizedClips("train", train_per_class, num_classes, duration_s, sample_rate, seed)
    test = SynthesizedClips("test", test_per_class, num_classes, duration_s, sample_rate, seed)
    return audio_bundle(
        train,  # type: ignore[arg-type]
        test,  # type: ignore[arg-type]
        num_classes=num_classes,
        clip_seconds=clip_seconds,
        views=views,
        view_options=view_options,
        stats={"dataset": "procedural_audio", "duration_s": duration_s, "seed": seed},
    )


__all__ = ["SynthesizedClips", "procedural_audio"]
