"""Video datasets: clips from video files or frame folders, and the registered builders.

A *source* is one video: a file decord can read or a folder of frame images. Sources are scanned
once when a dataset is built (frame count and size; a file that cannot be opened is an error naming
it, or with ``skip_bad`` a logged warning, left out and counted in ``DataBundle.info["num_skipped"]``
and ``info["bad_files"]``). Each item then samples one clip (:mod:`mmssl.modalities.video.views`),
decodes only its frames, already scaled towards ``frame_size`` by the decoder, and transforms it:

- pretraining: ``{"clip": float32 [T, 3, H, W], "label": int (-1 without classes), "index": int}``
  (random clip position, random resized crop + flip shared by the clip's frames);
- evaluation: ``{"input": float32 [T, 3, H, W], "label": int}`` (centred clip, resize + centre crop).

Builders (``DATASETS``, modality "video"): ``procedural_videos`` (built-in, the default everywhere),
``video_folder`` (any folder of videos, class sub-folders optional) and ``davis`` (a DAVIS-layout
root). All put ``info["propagation"] = {"root", "sequences", "resolution"}`` where a DAVIS-layout
set with masks is known, for the ``label_propagation`` evaluator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.data.keys import INDEX, LABEL
from mmssl.data.source import data_source
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.video.io import (
    FRAME_EXTENSIONS,
    VideoSequence,
    davis_split_file,
    is_video_file,
    list_davis_sequences,
    list_frames,
    load_davis_sequence,
    natural_key,
    read_frame_folder,
    read_video,
    video_info,
)
from mmssl.modalities.video.keys import CLIP
from mmssl.modalities.video.procedural import (
    DAVIS_RESOLUTION,
    ProceduralVideoSpec,
    build_procedural_videos,
    load_meta,
)
from mmssl.modalities.video.views import (
    FrameSize,
    as_size,
    clip_span,
    decode_size,
    eval_clip_transform,
    sample_clip_indices,
    train_clip_transform,
)

# Re-exported: the DAVIS readers are part of this module's public face too.
__all__ = [
    "VideoSequence",
    "list_davis_sequences",
    "load_davis_sequence",
    "read_video",
    "VideoSource",
    "scan_sources",
    "find_video_sources",
    "VideoClipDataset",
    "procedural_videos",
    "video_folder",
    "davis",
]

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class VideoSource:
    """One scanned video: ``kind`` is ``"file"`` (decord) or ``"frames"`` (a frame folder)."""

    path: Path
    label: int
    num_frames: int
    height: int
    width: int
    kind: str


def _is_frame_folder(path: Path) -> bool:
    exts = tuple(FRAME_EXTENSIONS)
    return path.is_dir() and any(p.suffix.lower() in exts for p in path.iterdir() if p.is_file())


def _scan_one(path: Path, label: int) -> VideoSource:
    if path.is_dir():
        files = list_frames(path)
        if not files:
            raise DataError(f"no frames in {path}")
        try:
            with Image.open(files[0]) as img:  # the header is enough for the size
                width, height = img.size
        except (OSError, ValueError, SyntaxError) as err:
            raise CorruptFileError(files[0], f"{type(err).__name__}: {err}") from err
        return VideoSource(path, label, len(files), height, width, "frames")
    info = video_info(path)
    return VideoSource(path, label, info.num_frames, info.height, info.width, "file")


def scan_sources(
    items: Sequence[tuple[Path, int]], skip_bad: bool = False
) -> tuple[list[VideoSource], list[Path]]:
    """Open every ``(path, label)`` once; returns (readable sources, bad paths).

    A path that cannot be opened raises :class:`~mmssl.errors.CorruptFileError` naming it, or with
    ``skip_bad`` is logged (warning) and returned among the bad paths.
    """
    sources, bad = [], []
    start = time.perf_counter()
    for path, label in items:
        try:
            sources.append(_scan_one(Path(path), label))
        except CorruptFileError as err:
            if not skip_bad:
                raise
            log.warning("skipping %s", err)
            bad.append(Path(path))
    log.debug("scanned %d videos in %.1fs", len(items), time.perf_counter() - start)
    return sources, bad


def find_video_sources(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(path, label)`` for every video under ``root``, and the class names.

    A video is a file with a video suffix or a folder of frame images. When ``root`` holds class
    sub-folders (folders that are not frame folders), their names, sorted, are the classes and
    the videos inside (at any depth) get their label; otherwise every video under ``root`` gets
    label -1 and there are no classes.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"video folder not found: {root}")
    children = sorted(
        (p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name)
    )
    class_dirs = [p for p in children if p.is_dir() and not _is_frame_folder(p)]
    loose = [p for p in children if (p.is_file() and is_video_file(p)) or _is_frame_folder(p)]
    if class_dirs and loose:
        raise DataError(
            f"{root} mixes videos ({loose[0].name} ...) with class folders ({class_dirs[0].name} ...); "
            "put every video in a class folder, or none"
        )
    if not class_dirs:
        return [(p, -1) for p in loose], []
    items: list[tuple[Path, int]] = []
    for label, folder in enumerate(class_dirs):
        items += [(p, label) for p in _videos_under(folder)]
    return items, [d.name for d in class_dirs]


def _videos_under(folder: Path) -> list[Path]:
    found = []
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if p.name.startswith("."):
            continue
        if p.is_file() and is_video_file(p):
            found.append(p)
        elif _is_frame_folder(p):
            found.append(p)
        elif p.is_dir():
            found += _videos_under(p)
    return found


# ----------------------------------------------------------------------------------------- dataset


class VideoClipDataset(Dataset):
    """One clip per source: ``(transform(uint8 [T, H, W, 3]), label)``.

    Frames are decoded at :func:`~mmssl.modalities.video.views.decode_size` (the source scaled to
    just cover ``frame_size``), then ``transform`` (None: the uint8 frames). A clip that fails to
    decode raises CorruptFileError naming the file; with ``skip_bad`` it is logged once and the next
    source's clip is returned (``num_skipped`` counts those seen by this process).
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        clip_len: int,
        frame_stride: int = 1,
        sampling: str = "uniform",
        frame_size: FrameSize | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        short: str = "pad",
        skip_bad: bool = False,
    ) -> None:
        if not sources:
            raise DataError("no readable videos")
        self.sources = list(sources)
        self.clip_len, self.frame_stride, self.sampling, self.short = clip_len, frame_stride, sampling, short
        self.frame_size = as_size(frame_size) if frame_size is not None else None
        self.transform, self.skip_bad = transform, skip_bad
        self.targets: list[int] = [s.label for s in self.sources]
        self.bad_files: set[Path] = set()
        if short == "error":  # fail now, naming the video, rather than in a data-loader worker later
            span = clip_span(clip_len, frame_stride)
            for s in self.sources:
                if s.num_frames < span:
                    sample_clip_indices(
                        s.num_frames, clip_len, frame_stride, short="error", where=str(s.path)
                    )

    @property
    def num_skipped(self) -> int:
        return len(self.bad_files)

    def __len__(self) -> int:
        return len(self.sources)

    def read_clip(self, source: VideoSource) -> torch.Tensor:
        """uint8 ``[T, h, w, 3]``: one sampled clip of ``source`` at its decode size."""
        idx = sample_clip_indices(
            source.num_frames,
            self.clip_len,
            self.frame_stride,
            self.sampling,
            short=self.short,
            where=str(source.path),
        )
        size = None
        if self.frame_size is not None:
            size = decode_size(source.height, source.width, self.frame_size)
            size = None if size == (source.height, source.width) else size
        if source.kind == "frames":
            return read_frame_folder(source.path, idx, size=size)
        return read_video(source.path, idx, size=size)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self.sources)
        for offset in range(n):
            source = self.sources[(index + offset) % n]
            try:
                clip = self.read_clip(source)
            except CorruptFileError as err:
                if not self.skip_bad:
                    raise
                if source.path not in self.bad_files:
                    self.bad_files.add(source.path)
                    log.warning("skipping %s", err)
                continue
            return (self.transform(clip) if self.transform is not None else clip), source.label
        raise DataError(f"no readable video: all {n} failed to decode")


class PretrainClips(Dataset):
    """``{"clip": clip, "label": label, "index": i}`` (label -1 where the source has no classes)."""

    def __init__(self, base: VideoClipDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip, label = self.base[index]
        return {"clip": clip, "label": int(label), "index": index}


class LabelledClips(Dataset):
    """``{"input": clip, "label": label}``: the evaluation contract."""

    def __init__(self, base: VideoClipDataset) -> None:
        self.base = base
        self.targets: list[int] = list(base.targets)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip, label = self.base[index]
        return {"input": clip, "label": int(label)}


# ---------------------------------------------------------------------------------------- builders


@dataclass
class _ClipOptions:
    clip_len: int
    frame_stride: int
    frame_size: FrameSize
    sampling: str
    short: str
    skip_bad: bool
    crop_scale: Sequence[float]

    def pretrain(self, sources: Sequence[VideoSource]) -> PretrainClips:
        transform = train_clip_transform(self.frame_size, crop_scale=self.crop_scale)
        return PretrainClips(self._dataset(sources, self.sampling, transform))

    def evaluation(self, sources: Sequence[VideoSource]) -> LabelledClips:
        return LabelledClips(self._dataset(sources, "uniform", eval_clip_transform(self.frame_size)))

    def _dataset(
        self, sources: Sequence[VideoSource], sampling: str, transform: Callable
    ) -> VideoClipDataset:
        return VideoClipDataset(
            sources,
            self.clip_len,
            self.frame_stride,
            sampling,
            self.frame_size,
            transform,
            short=self.short,
            skip_bad=self.skip_bad,
        )

    def info(self) -> dict[str, Any]:
        return {
            "modality": "video",
            "clip_len": self.clip_len,
            "frame_stride": self.frame_stride,
            "frame_size": list(as_size(self.frame_size)),
            "sampling": self.sampling,
        }


def _propagation_info(root: Path, names: Sequence[str], resolution: str) -> dict[str, Any]:
    return {"root": str(root), "sequences": list(names), "resolution": resolution}


def _bad_info(bad: Sequence[Path]) -> dict[str, Any]:
    if bad:
        log.warning("left out %d unreadable video(s): %s", len(bad), ", ".join(str(p) for p in bad[:5]))
    return {"num_skipped": len(bad), "bad_files": [str(p) for p in bad]}


def _check_sampling(sampling: str, short: str) -> None:
    # The same checks the sampler makes, up front: a typo fails at build time, not in a worker.
    sample_clip_indices(1, 1, 1, sampling, short=short)


@data_source(produces={CLIP, LABEL, INDEX})
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
    cache_dir: str | None = None,
) -> DataBundle:
    """Built-in moving-sprite videos (:mod:`mmssl.modalities.video.procedural`); nothing downloaded.

    ``num_videos`` videos of ``num_frames`` frames at ``video_size`` px (generated once, cached
    under ``cache_dir``, default ``$MMSSL_CACHE/procedural_videos`` or
    ``~/.cache/mmssl/procedural_videos``, keyed by these parameters and ``seed``); ``num_classes``
    motion classes; the last ``num_heldout`` are held out. Pretraining and ``eval_train`` use the
    training videos (mp4 files); ``eval_test`` the held-out ones; ``info["propagation"]`` names
    the first ``num_propagation_sequences`` held-out videos in the set's DAVIS-layout copy (0: all).
    Clips: ``clip_len`` frames every ``frame_stride``, ``sampling`` "random" or "uniform" for
    pretraining (evaluation is always "uniform"), cropped to ``frame_size``; ``crop_scale``: area
    range of the pretraining random resized crop; ``short``: "pad" or "error" for videos shorter
    than a clip.
    """
    _check_sampling(sampling, short)
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
    train, bad_train = scan_sources(by_split["train"], skip_bad)
    test, bad_test = scan_sources(by_split["heldout"], skip_bad)
    opts = _ClipOptions(clip_len, frame_stride, frame_size, sampling, short, skip_bad, crop_scale)
    heldout = [r["name"] for r in meta["videos"] if r["split"] == "heldout"]
    if num_propagation_sequences > 0:
        heldout = heldout[:num_propagation_sequences]
    return DataBundle(
        pretrain=opts.pretrain(train),
        eval_train=opts.evaluation(train),
        eval_test=opts.evaluation(test),
        num_classes=len(meta["class_names"]),
        info={
            **opts.info(),
            "dataset": "procedural_videos",
            "root": str(folder),
            "class_names": meta["class_names"],
            "num_train": len(train),
            "num_test": len(test),
            **_bad_info(bad_train + bad_test),
            "propagation": _propagation_info(folder / "DAVIS", heldout, DAVIS_RESOLUTION),
        },
    )


def _split_per_class(items: Sequence[tuple[Path, int]], test_fraction: float, seed: int):
    """Deterministic per-class split (seeded shuffle within each class): (train, test) lists."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in sorted({label for _, label in items}):
        members = [it for it in items if it[1] == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members)))) if len(members) > 1 else 0
        test += [members[i] for i in order[:n_test]]
        train += [members[i] for i in order[n_test:]]
    return train, test


def _davis_propagation(
    root: str | None, resolution: str, split: str | None, num_sequences: int
) -> dict[str, Any] | None:
    if root is None:
        return None
    names = list_davis_sequences(root, resolution, split)
    if num_sequences > 0:
        names = names[:num_sequences]
    return _propagation_info(Path(root).expanduser(), names, resolution)


@data_source(produces={CLIP, LABEL, INDEX})
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
) -> DataBundle:
    """Any folder of videos (files decord reads, or frame folders); class sub-folders optional.

    ``root/<class>/<video>`` (Kinetics-style; any depth below the class folder) gives labelled
    clips; videos directly in ``root`` are unlabelled (pretraining only, no evaluation sets). With
    ``train_subdir``/``test_subdir`` (e.g. "train", "val") the splits are those folders; otherwise
    ``test_fraction`` of each class is held out for ``eval_test`` by a ``seed``-ed draw. Pretraining
    uses every training video. ``davis_root``: a DAVIS-layout root whose ``davis_split`` sequences
    (the first ``num_propagation_sequences``, 0 = all) label propagation evaluates on, as CRW
    trains on Kinetics and evaluates on DAVIS. ``root`` None: the built-in procedural videos
    (``train``/``heldout`` folders, and their DAVIS copy when ``davis_root`` is None).
    Other options as for ``procedural_videos``.
    """
    _check_sampling(sampling, short)
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
        train_items, test_items = _split_per_class(items, test_fraction, seed) if classes else (items, [])
    if not train_items:
        raise DataError(f"no videos (extensions or frame folders) under {base}")
    train, bad_train = scan_sources(train_items, skip_bad)
    test, bad_test = scan_sources(test_items, skip_bad)
    opts = _ClipOptions(clip_len, frame_stride, frame_size, sampling, short, skip_bad, crop_scale)
    info: dict[str, Any] = {
        **opts.info(),
        "dataset": "video_folder",
        "root": str(base),
        "class_names": classes,
        "num_train": len(train),
        "num_test": len(test),
        **_bad_info(bad_train + bad_test),
    }
    propagation = _davis_propagation(davis_root, DAVIS_RESOLUTION, davis_split, num_propagation_sequences)
    if propagation is not None:
        info["propagation"] = propagation
    labelled = bool(classes) and bool(test)
    return DataBundle(
        pretrain=opts.pretrain(train),
        eval_train=opts.evaluation(train) if labelled else None,
        eval_test=opts.evaluation(test) if labelled else None,
        num_classes=len(classes) if labelled else 0,
        info=info,
    )


@data_source(produces={CLIP, LABEL, INDEX})
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
) -> DataBundle:
    """A DAVIS-layout root: pretrain on clips of the ``train_split`` sequences' frame folders,
    evaluate label propagation on the first ``num_propagation_sequences`` (0 = all) of
    ``val_split``. Without ``ImageSets`` lists (e.g. the DAVIS-2016-style sample in
    ``shared/data/video/DAVIS``), every sequence is used for both: the masks are never seen during
    pretraining. No classes, so no few-shot sets. ``root`` None: the built-in procedural set's
    DAVIS copy. Other options as for ``procedural_videos``.
    """
    _check_sampling(sampling, short)
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
    train, bad = scan_sources(items, skip_bad)
    opts = _ClipOptions(clip_len, frame_stride, frame_size, sampling, short, skip_bad, crop_scale)
    if num_propagation_sequences > 0:
        val_names = val_names[:num_propagation_sequences]
    return DataBundle(
        pretrain=opts.pretrain(train),
        num_classes=0,
        info={
            **opts.info(),
            "dataset": "davis",
            "root": str(base),
            "class_names": [],
            "num_train": len(train),
            "num_test": 0,
            **_bad_info(bad),
            "propagation": _propagation_info(base, val_names, resolution),
        },
    )
