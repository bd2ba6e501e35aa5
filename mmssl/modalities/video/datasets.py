"""The registered video datasets: clips from the built-in procedural set, any folder of videos, DAVIS.

Builders (``DATASETS``, modality "video"): ``procedural_videos`` (built-in, the default everywhere),
``video_folder`` (any folder of videos, class sub-folders optional) and ``davis`` (a DAVIS-layout
root). Sources are scanned once when a bundle is built (:mod:`mmssl.modalities.video.sources`); items
are the clips of :mod:`mmssl.modalities.video.clip_options`. Each puts a
:class:`~mmssl.modalities.video.propagation_set.PropagationSet` in ``extras`` where a DAVIS-layout set
with masks is known, for the ``label_propagation`` evaluator. ``stats`` report the clip options, the
class names, the split sizes and the unreadable files left out with ``skip_bad``
(``num_skipped``, ``bad_files``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmssl.data import DataBundle, SkipBadFiles
from mmssl.data.shards import ShardStream
from mmssl.data.source import data_source
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.video.clip_options import ClipOptions, pretrain_keys, skipped_stats
from mmssl.modalities.video.io import davis_split_file, list_davis_sequences
from mmssl.modalities.video.procedural import (
    DAVIS_RESOLUTION,
    ProceduralVideoSpec,
    build_procedural_videos,
    load_meta,
)
from mmssl.modalities.video.propagation_set import davis_propagation_set, propagation_set
from mmssl.modalities.video.shards import video_shard_samples
from mmssl.modalities.video.sources import find_video_sources, scan_sources, split_per_class
from mmssl.modalities.video.two_clips import TWO_CLIP_DEFAULTS, TwoClipOptions

log = logging.getLogger(__name__)


@data_source(produces=pretrain_keys)
def procedural_videos(
    clip_len: int = 8,
    frame_stride: int = 1,
    frame_size: int | list[int] = 64,
    sampling: str = "random",
    skip_bad: bool = False,
    num_propagation_sequences: int = 8,
    seed: int = 0,
    num_videos: int = 160,
    num_heldout: int = 40,
    num_frames: int = 20,
    video_size: int = 64,
    num_classes: int = 4,
    max_objects: int = 3,
    crop_scale: Sequence[float] = (0.4, 1.0),
    short: str = "pad",
    views: str | None = None,
    two_clips: TwoClipOptions = TWO_CLIP_DEFAULTS,
    backend: str = "decord",
    cache_dir: str | None = None,
) -> DataBundle:
    """Built-in moving-sprite videos (:mod:`mmssl.modalities.video.procedural`); nothing downloaded.

    ``num_videos`` videos of ``num_frames`` frames at ``video_size`` px (generated once, cached
    under ``cache_dir``, default ``$MMSSL_CACHE/procedural_videos`` or
    ``~/.cache/mmssl/procedural_videos``, keyed by these parameters and ``seed``); ``num_classes``
    motion classes; the last ``num_heldout`` are held out. Pretraining and ``eval_train`` use the
    training videos (mp4 files); ``eval_test`` the held-out ones; the ``PropagationSet`` extra names
    the first ``num_propagation_sequences`` held-out videos in the set's DAVIS-layout copy (0: all).
    Clips: ``clip_len`` frames every ``frame_stride``, ``sampling`` "random" or "uniform" for
    pretraining (evaluation is always "uniform"), cropped to ``frame_size``; ``crop_scale``: area
    range of the pretraining random resized crop; ``short``: "pad" or "error" for videos shorter
    than a clip. ``views``: null (one clip per item, ``clip`` key) or ``two_clips`` (two clips of
    the same video, ``views`` key, for SimCLR / MoCo / BYOL as CVRL; drawn and augmented as
    ``two_clips`` says, :class:`~mmssl.modalities.video.two_clips.TwoClipOptions`, which replaces
    ``crop_scale`` and ``sampling`` for them). ``backend``: the library that decodes video files,
    ``decord`` or ``torchcodec`` (:data:`~mmssl.modalities.video.io.VIDEO_BACKENDS`).
    """
    opts = ClipOptions(
        clip_len, frame_stride, frame_size, sampling, short, skip_bad, crop_scale, views, two_clips, backend
    )
    opts.check()
    spec = ProceduralVideoSpec(
        num_videos=num_videos,
        num_frames=num_frames,
        frame_size=video_size,
        num_classes=num_classes,
        num_heldout=num_heldout,
        max_objects=max_objects,
        seed=seed,
    )
    folder = build_procedural_videos(spec, cache_dir)
    meta = load_meta(folder)
    by_split: dict[str, list[tuple[Path, int]]] = {"train": [], "heldout": []}
    for record in meta["videos"]:
        path = (
            folder
            / "videos"
            / record["split"]
            / meta["class_names"][record["label"]]
            / f"{record['name']}.mp4"
        )
        by_split[record["split"]].append((path, record["label"]))
    skipping = SkipBadFiles(skip_bad)
    train = scan_sources(by_split["train"], skipping, backend)
    test = scan_sources(by_split["heldout"], skipping, backend)
    skipped = opts.track_skips(train, test)
    heldout = [r["name"] for r in meta["videos"] if r["split"] == "heldout"]
    return DataBundle(
        pretrain=opts.pretrain(train),
        eval_train=opts.evaluation(train),
        eval_test=opts.evaluation(test),
        num_classes=len(meta["class_names"]),
        extras=(
            propagation_set(folder / "DAVIS", heldout, DAVIS_RESOLUTION, num_propagation_sequences),
            skipped,
        ),
        stats={
            **opts.stats(),
            "dataset": "procedural_videos",
            "root": str(folder),
            "class_names": meta["class_names"],
            "num_train": len(train),
            "num_test": len(test),
            **skipped_stats(skipping),
        },
    )


def video_folder_keys(options: Mapping[str, Any]) -> set[str]:
    """As :func:`~.clip_options.pretrain_keys`; also refuses, when the recipe loads, both ``root`` and
    ``shards`` (one says where the videos are; neither: the built-in procedural videos)."""
    if options.get("root") is not None and options.get("shards") is not None:
        raise ConfigError(
            "dataset 'video_folder' takes data.root (a folder of videos) or data.shards (a shard folder "
            f"written by data_tools/make_shards.py), not both; got root: {options['root']}, "
            f"shards: {options['shards']}"
        )
    return pretrain_keys(options)


@data_source(produces=video_folder_keys, labelled=lambda options: options.get("shards") is None)
def video_folder(
    root: str | None = None,
    clip_len: int = 8,
    frame_stride: int = 1,
    frame_size: int | list[int] = 112,
    sampling: str = "random",
    skip_bad: bool = False,
    train_subdir: str | None = None,
    test_subdir: str | None = None,
    test_fraction: float = 0.25,
    davis_root: str | None = None,
    davis_split: str | None = "val",
    num_propagation_sequences: int = 0,
    seed: int = 0,
    crop_scale: Sequence[float] = (0.4, 1.0),
    short: str = "pad",
    views: str | None = None,
    two_clips: TwoClipOptions = TWO_CLIP_DEFAULTS,
    backend: str = "decord",
    shards: str | None = None,
    shuffle_buffer: int = 100,
) -> DataBundle:
    """Any folder of videos (files the ``backend`` decodes, or frame folders); class sub-folders optional.

    ``root/<class>/<video>`` (Kinetics-style; any depth below the class folder) gives labelled
    clips; videos directly in ``root`` are unlabelled (pretraining only, no evaluation sets). With
    ``train_subdir``/``test_subdir`` (e.g. "train", "val") the splits are those folders; otherwise
    ``test_fraction`` of each class is held out for ``eval_test`` by a ``seed``-ed draw. Pretraining
    uses every training video. ``davis_root``: a DAVIS-layout root whose ``davis_split`` sequences
    (the first ``num_propagation_sequences``, 0 = all) label propagation evaluates on, as CRW
    trains on Kinetics and evaluates on DAVIS. ``root`` None: the built-in procedural videos
    (``train``/``heldout`` folders, and their DAVIS copy when ``davis_root`` is None).
    Other options as for ``procedural_videos``.

    ``shards`` (instead of ``root``): a folder of video shards written by ``data_tools/make_shards.py
    video``, streamed (:class:`~mmssl.data.shards.ShardStream`: split over processes and data-loader
    workers, block shuffle of ``shuffle_buffer`` videos, exact resume) and decoded from memory; pretraining
    only (labels in the shards are not used), with label propagation on ``davis_root`` when given. The
    buffer defaults to 100 (images use 1000) because a block holds its videos' bytes in each worker: a
    few hundred MB for Kinetics clips.
    """
    opts = ClipOptions(
        clip_len, frame_stride, frame_size, sampling, short, skip_bad, crop_scale, views, two_clips, backend
    )
    opts.check()
    video_folder_keys({"root": root, "shards": shards, "views": views})
    if shards is not None:
        return _streamed_video_bundle(
            opts, shards, seed, shuffle_buffer, davis_root, davis_split, num_propagation_sequences
        )
    if root is None:
        folder = build_procedural_videos(ProceduralVideoSpec(seed=seed))
        root, train_subdir, test_subdir = str(folder / "videos"), "train", "heldout"
        if davis_root is None:
            davis_root = str(folder / "DAVIS")
    base = Path(root).expanduser()
    if train_subdir is not None:
        train_items, classes = find_video_sources(base / train_subdir)
        test_items, test_classes = find_video_sources(base / (test_subdir or "test"))
        if classes != test_classes:
            raise DataError(
                f"class folders differ between {base / train_subdir} ({', '.join(classes)}) and "
                f"{base / (test_subdir or 'test')} ({', '.join(test_classes)})"
            )
    else:
        items, classes = find_video_sources(base)
        train_items, test_items = split_per_class(items, test_fraction, seed) if classes else (items, [])
    if not train_items:
        raise DataError(f"no videos (extensions or frame folders) under {base}")
    skipping = SkipBadFiles(skip_bad)
    train = scan_sources(train_items, skipping, backend)
    test = scan_sources(test_items, skipping, backend)
    skipped = opts.track_skips(train, test)
    stats = {
        **opts.stats(),
        "dataset": "video_folder",
        "root": str(base),
        "class_names": classes,
        "num_train": len(train),
        "num_test": len(test),
        **skipped_stats(skipping),
    }
    extras: tuple[object, ...] = (skipped,)
    if davis_root is not None:
        n = num_propagation_sequences
        extras += (davis_propagation_set(davis_root, DAVIS_RESOLUTION, davis_split, n),)
    labelled = bool(classes) and bool(test)
    return DataBundle(
        pretrain=opts.pretrain(train),
        eval_train=opts.evaluation(train) if labelled else None,
        eval_test=opts.evaluation(test) if labelled else None,
        num_classes=len(classes) if labelled else 0,
        extras=extras,
        stats=stats,
    )


def _streamed_video_bundle(
    opts: ClipOptions,
    shards: str,
    seed: int,
    shuffle_buffer: int,
    davis_root: str | None,
    davis_split: str | None,
    num_propagation_sequences: int,
) -> DataBundle:
    """``video_folder`` over a shard set: clips of the streamed records, no evaluation sets."""
    samples = video_shard_samples(shards, opts.backend)
    extras: tuple[object, ...] = ()
    if davis_root is not None:
        n = num_propagation_sequences
        extras = (davis_propagation_set(davis_root, DAVIS_RESOLUTION, davis_split, n),)
    return DataBundle(
        pretrain=ShardStream(opts.pretrain(samples), samples, seed=seed, shuffle_buffer=shuffle_buffer),
        num_classes=0,
        extras=extras,
        stats={
            **opts.stats(),
            "dataset": "video_folder",
            "shards": str(samples.manifest.root),
            "num_shards": len(samples.manifest.shards),
            "class_names": [],
            "num_train": len(samples),
            "num_test": 0,
            "num_skipped": 0,
            "bad_files": [],
        },
    )


@data_source(produces=pretrain_keys, labelled=False)  # no classes: label propagation only
def davis(
    root: str | None = None,
    resolution: str = "480p",
    clip_len: int = 8,
    frame_stride: int = 1,
    frame_size: int | list[int] = 64,
    sampling: str = "random",
    skip_bad: bool = False,
    train_split: str = "train",
    val_split: str = "val",
    num_propagation_sequences: int = 0,
    seed: int = 0,
    crop_scale: Sequence[float] = (0.4, 1.0),
    short: str = "pad",
    views: str | None = None,
    two_clips: TwoClipOptions = TWO_CLIP_DEFAULTS,
    backend: str = "decord",
) -> DataBundle:
    """A DAVIS-layout root: pretrain on clips of the ``train_split`` sequences' frame folders,
    evaluate label propagation on the first ``num_propagation_sequences`` (0 = all) of
    ``val_split``. Without ``ImageSets`` lists (e.g. the DAVIS-2016-style sample in
    ``shared/data/video/DAVIS``), every sequence is used for both: the masks are never seen during
    pretraining. No classes, so no few-shot sets. ``root`` None: the built-in procedural set's
    DAVIS copy. Other options as for ``procedural_videos``.
    """
    opts = ClipOptions(
        clip_len, frame_stride, frame_size, sampling, short, skip_bad, crop_scale, views, two_clips, backend
    )
    opts.check()
    if root is None:
        root = str(build_procedural_videos(ProceduralVideoSpec(seed=seed)) / "DAVIS")
    base = Path(root).expanduser()
    train_names = list_davis_sequences(base, resolution, train_split)
    val_names = list_davis_sequences(base, resolution, val_split)
    if davis_split_file(base, resolution, train_split) is None:
        log.info(
            "no ImageSets list for '%s' under %s: pretraining on all %d sequences",
            train_split,
            base,
            len(train_names),
        )
    items = [(base / "JPEGImages" / resolution / name, -1) for name in train_names]
    skipping = SkipBadFiles(skip_bad)
    train = scan_sources(items, skipping, backend)
    skipped = opts.track_skips(train)
    return DataBundle(
        pretrain=opts.pretrain(train),
        num_classes=0,
        extras=(propagation_set(base, val_names, resolution, num_propagation_sequences), skipped),
        stats={
            **opts.stats(),
            "dataset": "davis",
            "root": str(base),
            "class_names": [],
            "num_train": len(train),
            "num_test": 0,
            **skipped_stats(skipping),
        },
    )
