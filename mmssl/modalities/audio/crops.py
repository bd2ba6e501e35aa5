"""Batch items of labelled audio clips: fixed-length crops, and the bundle of a labelled audio set.

Built from the generic wrappers of :mod:`mmssl.data.wrappers` over
:class:`~mmssl.modalities.audio.clips.AudioClips` (``(wave [S_full], label)``):

- evaluation: ``{"input": wave [S], "label": int}`` with a deterministic centre crop / zero pad to
  ``S = round(clip_seconds * sample_rate)``; batches are ``[B, S]`` waveforms, the input of
  ``audio_cnn`` (so the generic ``few_shot`` / ``knn`` / ``linear`` evaluators work on audio as is);
- pretraining, ``views=None``: ``{"audio": wave [S] (random crop), "label": int, "index": i}``;
- pretraining, ``views="crops"``: ``{"views": [a1, a2], "index": i}``, two random crops with a random
  gain each (segments of one clip as positives, as in COLA, Saeed et al. 2021), for the generic
  two-view methods (``simclr``, ``moco``, ``byol``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data import DataBundle, LabelledItems, MultiViewItems, SingleItems
from mmssl.data.keys import INDEX, LABEL, VIEWS
from mmssl.errors import DataError
from mmssl.modalities.audio.clips import AudioClips, num_samples_for
from mmssl.modalities.audio.io import center_crop, random_crop
from mmssl.modalities.audio.keys import AUDIO

AUDIO_VIEWS: tuple[str, ...] = ("crops",)


class GainCrops:
    """Two random crops of one clip, each with a random gain drawn uniformly in ``[-gain_db, +gain_db]``
    dB (loudness alone must not tell clips apart)."""

    def __init__(self, num_samples: int, gain_db: float = 6.0) -> None:
        self.num_samples, self.gain_db = int(num_samples), float(gain_db)

    def view(self, wave: Tensor) -> Tensor:
        gain = 10 ** ((torch.rand(()).item() * 2 - 1) * self.gain_db / 20)
        return random_crop(wave, self.num_samples) * gain

    def __call__(self, wave: Tensor) -> list[Tensor]:
        return [self.view(wave), self.view(wave)]


def check_views(views: str | None) -> str | None:
    """``views`` as a builder takes it: None (also "none" / "null" / "") or one of ``AUDIO_VIEWS``."""
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in AUDIO_VIEWS:
        raise DataError(f"unknown audio views '{views}'; choose one of {', '.join(AUDIO_VIEWS)} or null")
    return views


def pretrain_keys(options: Mapping[str, Any]) -> set[str]:
    """``views: crops`` gives two crops per clip (``views``); otherwise one crop with its label."""
    return {VIEWS, INDEX} if check_views(options["views"]) else {AUDIO, LABEL, INDEX}


def labelled_audio(base: Dataset, num_samples: int) -> LabelledItems:
    """``{"input": centre_crop(wave, num_samples), "label": int}``: the evaluation contract."""
    return LabelledItems(base, functools.partial(center_crop, num_samples=int(num_samples)))


def audio_pretrain_dataset(base: Dataset, views: str | None, num_samples: int) -> Dataset:
    """The pretraining items for ``views`` (see the module docstring)."""
    if check_views(views) is None:
        return SingleItems(base, functools.partial(random_crop, num_samples=int(num_samples)), AUDIO)
    return MultiViewItems(base, GainCrops(num_samples))


def audio_bundle(
    train: AudioClips,
    test: AudioClips,
    *,
    num_classes: int,
    clip_seconds: float,
    views: str | None,
    stats: dict[str, Any],
) -> DataBundle:
    """Wrap train / test clips into a DataBundle (pretraining on the train clips)."""
    n = num_samples_for(clip_seconds, train.sample_rate)
    return DataBundle(
        pretrain=audio_pretrain_dataset(train, views, n),
        eval_train=labelled_audio(train, n),
        eval_test=labelled_audio(test, n),
        num_classes=num_classes,
        stats={
            "modality": "audio",
            "sample_rate": train.sample_rate,
            "clip_samples": n,
            "views": check_views(views),
            "num_train": len(train),
            "num_test": len(test),
            "num_skipped": train.num_skipped + test.num_skipped,
            "class_names": train.class_names,
            **stats,
        },
    )
