"""Batch items of labelled audio clips: fixed-length crops, and the bundle of a labelled audio set.

Built from the generic wrappers of :mod:`mmssl.data.wrappers` over
:class:`~mmssl.modalities.audio.clips.AudioClips` (``(wave [S_full], label)``):

- evaluation: ``{"input": wave [S], "label": int}`` with a deterministic centre crop / zero pad to
  ``S = round(clip_seconds * sample_rate)``; batches are ``[B, S]`` waveforms, the input of
  ``audio_cnn`` (so the generic ``few_shot`` / ``knn`` / ``linear`` evaluators work on audio as is);
- pretraining, ``views=None``: ``{"audio": wave [S] (random crop), "label": int, "index": i}``;
- pretraining, ``views="crops"``: ``{"views": [a1, a2], "index": i}``, two random crops with a random
  gain each (segments of one clip as positives, as in COLA, Saeed et al. 2021) and optionally a mixed-in
  background clip (BYOL-A), set by ``view_options``
  (:class:`~mmssl.modalities.audio.views.AudioViewOptions`), for the generic two-view methods
  (``simclr``, ``moco``, ``byol``). SpecAugment masking is an encoder option (``encoder.spec_augment``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from mmssl.data import DataBundle, LabelledItems, MultiViewItems, SingleItems
from mmssl.data.keys import INDEX, LABEL, VIEWS
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.audio.clips import AudioClips, num_samples_for
from mmssl.modalities.audio.io import center_crop, random_crop
from mmssl.modalities.audio.keys import AUDIO
from mmssl.modalities.audio.views import AudioCropViews, AudioViewOptions, audio_view_options

AUDIO_VIEWS: tuple[str, ...] = ("crops",)


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


def audio_pretrain_dataset(
    base: Dataset,
    views: str | None,
    num_samples: int,
    view_options: AudioViewOptions | Mapping[str, Any] | None = None,
) -> Dataset:
    """The pretraining items for ``views`` (see the module docstring); ``view_options`` need ``views``."""
    options = audio_view_options(view_options)
    if check_views(views) is None:
        if options is not None:
            raise ConfigError("data.view_options needs data.views: crops (two views per clip)")
        return SingleItems(base, functools.partial(random_crop, num_samples=int(num_samples)), AUDIO)
    try:
        transform = AudioCropViews(num_samples, options, pool=base)
    except ValueError as err:
        raise ConfigError(f"'data.view_options': {err}") from None
    return MultiViewItems(base, transform)


def audio_bundle(
    train: AudioClips,
    test: AudioClips,
    *,
    num_classes: int,
    clip_seconds: float,
    views: str | None,
    stats: dict[str, Any],
    view_options: AudioViewOptions | Mapping[str, Any] | None = None,
) -> DataBundle:
    """Wrap train / test clips into a DataBundle (pretraining on the train clips, background clips for
    mixing drawn from them too)."""
    n = num_samples_for(clip_seconds, train.sample_rate)
    options = audio_view_options(view_options)
    return DataBundle(
        pretrain=audio_pretrain_dataset(train, views, n, options),
        eval_train=labelled_audio(train, n),
        eval_test=labelled_audio(test, n),
        num_classes=num_classes,
        stats={
            "modality": "audio",
            "sample_rate": train.sample_rate,
            "clip_samples": n,
            "views": check_views(views),
            "view_options": dataclasses.asdict(options) if options is not None else None,
            "num_train": len(train),
            "num_test": len(test),
            "num_skipped": train.num_skipped + test.num_skipped,
            "bad_files": [str(p) for d in (train, test) for p in getattr(d, "bad_files", [])],
            "class_names": train.class_names,
            **stats,
        },
    )
