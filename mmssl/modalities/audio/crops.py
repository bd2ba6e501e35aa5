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

The same items are made over a streamed audio shard set (:mod:`~mmssl.modalities.audio.shards`; the
datasets' ``shards`` option), whose clips carry label -1.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import Dataset

from mmssl.data import DataBundle, LabelledItems, MultiViewItems, SingleItems
from mmssl.data.keys import INDEX, LABEL, VIEWS
from mmssl.data.shards import ShardStream
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.audio.clips import AudioClips, num_samples_for
from mmssl.modalities.audio.io import center_crop, random_crop
from mmssl.modalities.audio.keys import AUDIO
from mmssl.modalities.audio.shards import AudioShardSamples, HeldBlock
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


def root_or_shards_keys(dataset: str, root_is: str) -> Callable[[Mapping[str, Any]], set[str]]:
    """The ``produces`` of a labelled audio set that also streams shards: :func:`pretrain_keys`, after
    checking, when the recipe loads, that ``root`` (``root_is``) or ``shards`` says what to read."""

    def keys(options: Mapping[str, Any]) -> set[str]:
        if options.get("root") is None and options.get("shards") is None:
            raise ConfigError(
                f"dataset '{dataset}' needs data.root ({root_is}) or data.shards (audio shards written by "
                "data_tools/make_shards.py audio, to pretrain on; data.root then gives the evaluation "
                "clips)"
            )
        return pretrain_keys(options)

    return keys


def _same(value: Any, default: Any) -> bool:
    """``value == default``, a list from YAML equal to a tuple default (``[5]`` and ``(5,)``)."""
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default


def refuse_root_only_options(dataset: Callable[..., Any], **values: Any) -> None:
    """:class:`~mmssl.errors.ConfigError` when a set read from ``shards`` alone is given options (``values``,
    by name) that only its clips under ``root`` use (the split, preloading, skipping bad files): they would
    be silently ignored. Given means: other than the builder's default."""
    defaults = inspect.signature(dataset).parameters
    given = [f"data.{name}" for name, value in values.items() if not _same(value, defaults[name].default)]
    if given:
        raise ConfigError(
            f"dataset '{dataset.__name__}': {', '.join(given)} apply to the clips under data.root, and only "
            "data.shards is given (shards are read whole, every record checked when written): give "
            "data.root for the evaluation clips, or leave these out"
        )


def has_root(options: Mapping[str, Any]) -> bool:
    """The ``labelled`` of those sets: evaluation clips come from ``root`` (shards alone give none)."""
    return options.get("root") is not None


def labelled_audio(base: Dataset, num_samples: int) -> LabelledItems:
    """``{"input": centre_crop(wave, num_samples), "label": int}``: the evaluation contract."""
    return LabelledItems(base, functools.partial(center_crop, num_samples=int(num_samples)))


def audio_pretrain_dataset(
    base: Dataset,
    views: str | None,
    num_samples: int,
    view_options: AudioViewOptions | Mapping[str, Any] | None = None,
    pool: Dataset | None = None,
) -> Dataset:
    """The pretraining items for ``views`` (see the module docstring); ``view_options`` need ``views``.
    ``pool``: where background clips are drawn from (default ``base``)."""
    options = audio_view_options(view_options)
    if check_views(views) is None:
        if options is not None:
            raise ConfigError("data.view_options needs data.views: crops (two views per clip)")
        return SingleItems(base, functools.partial(random_crop, num_samples=int(num_samples)), AUDIO)
    try:
        transform = AudioCropViews(num_samples, options, pool=base if pool is None else pool)
    except ValueError as err:
        raise ConfigError(f"'data.view_options': {err}") from None
    return MultiViewItems(base, transform)


def audio_bundle(
    train: AudioClips | None,
    test: AudioClips | None,
    *,
    num_classes: int,
    clip_seconds: float,
    views: str | None,
    stats: dict[str, Any],
    view_options: AudioViewOptions | Mapping[str, Any] | None = None,
    shards: AudioShardSamples | None = None,
    seed: int = 0,
    shuffle_buffer: int = 1000,
) -> DataBundle:
    """Wrap train / test clips into a DataBundle (pretraining on the train clips, background clips for
    mixing drawn from them too).

    ``shards``: pretrain on that shard set instead, streamed (:class:`~mmssl.data.shards.ShardStream`,
    ``seed``, block shuffle of ``shuffle_buffer`` clips; background clips from the block being streamed,
    :class:`~mmssl.modalities.audio.shards.HeldBlock`); ``train`` / ``test`` (both or neither) are then
    the evaluation clips only. ``stats["num_train"]`` counts the pretraining clips (the records then,
    the evaluation training clips being ``num_eval_train``)."""
    if shards is None and (train is None or test is None):
        raise DataError("audio_bundle needs train and test clips, or shards to pretrain on")
    sample_rate = shards.sample_rate if shards is not None else train.sample_rate  # type: ignore[union-attr]
    n = num_samples_for(clip_seconds, sample_rate)
    options = audio_view_options(view_options)
    evaluation = [d for d in (train, test) if d is not None]
    if shards is None:
        pretrain: Dataset = audio_pretrain_dataset(train, views, n, options)  # type: ignore[arg-type]
        streamed: dict[str, Any] = {"num_train": len(train)}  # type: ignore[arg-type]
    else:
        items = audio_pretrain_dataset(shards, views, n, options, pool=HeldBlock(shards))
        pretrain = ShardStream(items, shards, seed=seed, shuffle_buffer=shuffle_buffer)
        streamed = {
            "shards": str(shards.manifest.root),
            "num_shards": len(shards.manifest.shards),
            "num_train": len(shards),
            "num_eval_train": len(train) if train is not None else 0,
        }
    return DataBundle(
        pretrain=pretrain,
        eval_train=labelled_audio(train, n) if train is not None else None,
        eval_test=labelled_audio(test, n) if test is not None else None,
        num_classes=num_classes,
        stats={
            "modality": "audio",
            "sample_rate": sample_rate,
            "clip_samples": n,
            "views": check_views(views),
            "view_options": dataclasses.asdict(options) if options is not None else None,
            **streamed,
            "num_test": len(test) if test is not None else 0,
            "num_skipped": sum(d.num_skipped for d in evaluation),
            "bad_files": [str(p) for d in evaluation for p in getattr(d, "bad_files", [])],
            "class_names": train.class_names if train is not None else [],
            **stats,
        },
    )
