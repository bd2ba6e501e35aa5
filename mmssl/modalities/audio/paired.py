"""Paired video + audio clips: the procedural audio-visual set and folders of real videos.

Base dataset (:class:`AudioVisualClips`) decodes every clip once at construction: ``num_frames``
frames evenly spaced in time (uint8 ``[T, 3, S, S]``, shorter side scaled to ``S`` then centre
square), their times, and the whole audio track (mono float32 at ``sample_rate``; from a sidecar
audio file with the same stem when there is one, else the video's own track). Wrappers give what
the toolkit contracts expect:

- pretraining (:class:`PairedItems`): ``{"image": float32 [3, S, S] (IMAGENET-normalised),
  "audio": float32 [S_a], "label": int, "index": i}``; one random frame of the clip, the audio
  window of ``clip_seconds`` centred on that frame's time (so picture and sound are simultaneous);
  with ``augment`` the frame gets a random resized crop (area 0.5-1) and a horizontal flip;
- held-out pairs (``info["pairs_test"]``): the same items, deterministic (middle frame);
- visual evaluation (:class:`FrameItems`): ``{"input": middle frame, "label"}``;
- audio evaluation (:class:`ClipAudioItems`): ``{"input": centre crop [S_a], "label"}`` (the input of
  ``audio_cnn``).

``eval_train`` / ``eval_test`` hold the visual items by default (``eval_modality="audio"``: the
audio items), and ``info["audio_eval"] = {"train", "test", "num_classes"}`` always holds the audio
ones, so one bundle serves visual and audio N-shot evaluation. ``info["pretrain_clips"]`` is the
training :class:`AudioVisualClips` (whole-clip audio for methods that summarise each clip, e.g.
ambient-sound targets; ``cache_key`` names its contents).

Everything is preloaded, which suits folders of a few hundred short clips (the procedural set:
about 30 MB); for larger collections extract frames and audio offline first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE, INDEX, LABEL
from mmssl.data.source import data_source
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.audio.data import num_samples_for
from mmssl.modalities.audio.io import (
    AUDIO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    center_crop,
    crop_at,
    load_audio,
    read_video_frames,
)
from mmssl.modalities.audio.keys import AUDIO
from mmssl.modalities.audio.procedural import generate_audio_visual_set, read_manifest
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD, eval_transform

log = logging.getLogger(__name__)

EVAL_MODALITIES: tuple[str, ...] = ("image", "audio")


class AudioVisualClips(Dataset):
    """Preloaded ``(video, audio or None, label)`` clips (see the module docstring).

    Items: ``(frames uint8 [T, 3, S, S], frame times float64 [T] in s, audio float32 [S_full], label)``.
    A clip that cannot be decoded (or has no audio) raises naming the file; with ``skip_bad=True``
    it is dropped with a warning and counted in ``num_skipped``.
    """

    def __init__(
        self,
        entries: Sequence[tuple[str | Path, str | Path | None, int]],
        *,
        image_size: int = 64,
        num_frames: int = 8,
        sample_rate: int = 16000,
        skip_bad: bool = False,
        allow_silent: bool = False,
        class_names: Sequence[str] | None = None,
        cache_key: str | None = None,
    ) -> None:
        if not entries:
            raise DataError("no video clips given")
        self.image_size, self.sample_rate = int(image_size), int(sample_rate)
        self.class_names = list(class_names) if class_names is not None else None
        self.bad_files: list[Path] = []
        self.frames: list[Tensor] = []
        self.times: list[Tensor] = []
        self.audio: list[Tensor] = []
        self.entries: list[tuple[Path, Path | None, int]] = []
        for video, audio, label in entries:
            video = Path(video)
            audio = Path(audio) if audio is not None else None
            try:
                frames, times = read_video_frames(video, num_frames, image_size)
                wave = load_audio(
                    audio if audio is not None else video, sample_rate, allow_silent=allow_silent
                )[0][0]
            except (CorruptFileError, DataError) as err:
                if not skip_bad:
                    raise
                self.bad_files.append(video)
                log.warning("skipping %s", err)
                continue
            self.frames.append(frames)
            self.times.append(times)
            self.audio.append(wave)
            self.entries.append((video, audio, int(label)))
        if not self.entries:
            raise DataError(f"no readable clip among {len(entries)} (first: {entries[0][0]})")
        self.targets: list[int] = [label for _, _, label in self.entries]
        self.cache_key = cache_key

    @property
    def num_skipped(self) -> int:
        return len(self.bad_files)

    def clip_audio(self, index: int) -> Tensor:
        """The whole audio track of clip ``index`` (mono, ``sample_rate``)."""
        return self.audio[index]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, int]:
        return self.frames[index], self.times[index], self.audio[index], self.targets[index]


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
            "image": self.transform(frames[k]),
            "audio": crop_at(audio, self.clip_samples, centre),
            "label": int(label),
            "index": index,
        }


class FrameItems(Dataset):
    """``{"input": middle frame (IMAGENET-normalised), "label"}``: visual evaluation items."""

    def __init__(self, base: AudioVisualClips) -> None:
        self.base, self.transform = base, eval_transform(base.image_size)
        self.targets = list(base.targets)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames, _, _, label = self.base[index]
        return {"input": self.transform(frames[len(frames) // 2]), "label": int(label)}


class ClipAudioItems(Dataset):
    """``{"input": centre crop of the audio [clip_samples], "label"}``: audio evaluation items."""

    def __init__(self, base: AudioVisualClips, clip_samples: int) -> None:
        self.base, self.clip_samples = base, int(clip_samples)
        self.targets = list(base.targets)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "input": center_crop(self.base.audio[index], self.clip_samples),
            "label": self.base.targets[index],
        }


def paired_bundle(
    train: AudioVisualClips,
    test: AudioVisualClips,
    *,
    num_classes: int,
    clip_seconds: float,
    eval_modality: str,
    augment: bool,
    info: dict[str, Any],
) -> DataBundle:
    """Wrap train / test clips into a DataBundle (see the module docstring)."""
    if eval_modality not in EVAL_MODALITIES:
        raise DataError(
            f"unknown eval_modality '{eval_modality}'; choose one of {', '.join(EVAL_MODALITIES)}"
        )
    n = num_samples_for(clip_seconds, train.sample_rate)
    audio_eval = {
        "train": ClipAudioItems(train, n),
        "test": ClipAudioItems(test, n),
        "num_classes": num_classes,
    }
    if eval_modality == "image":
        eval_train, eval_test = FrameItems(train), FrameItems(test)
    else:
        eval_train, eval_test = audio_eval["train"], audio_eval["test"]
    return DataBundle(
        pretrain=PairedItems(train, n, train=True, augment=augment),
        eval_train=eval_train,
        eval_test=eval_test,
        num_classes=num_classes,
        info={
            "modality": "audiovisual",
            "eval_modality": eval_modality,
            "sample_rate": train.sample_rate,
            "clip_samples": n,
            "image_size": train.image_size,
            "class_names": train.class_names,
            "num_train": len(train),
            "num_test": len(test),
            "num_skipped": train.num_skipped + test.num_skipped,
            "audio_eval": audio_eval,
            "pairs_test": PairedItems(test, n, train=False),
            "pretrain_clips": train,
            **info,
        },
    )


# ---------------------------------------------------------------------------------- builders


@data_source(produces={IMAGE, AUDIO, LABEL, INDEX})
def procedural_audio_visual(
    num_scenes: int = 10,
    train_per_class: int = 24,
    test_per_class: int = 8,
    image_size: int = 64,
    duration_s: float = 2.0,
    clip_seconds: float = 2.0,
    sample_rate: int = 16000,
    fps: int = 8,
    num_frames: int = 8,
    seed: int = 0,
    cache_dir: str | None = None,
    eval_modality: str = "image",
    augment: bool = True,
) -> DataBundle:
    """Built-in audio-visual scenes (see :mod:`mmssl.modalities.audio.procedural`): scene class
    ``k`` (of ``num_scenes``, the classes) shows shape/texture ``k`` and sounds like ambient
    texture ``k``; no download.

    Clips of ``duration_s`` seconds are generated once as mp4 (``fps`` frames/s, ``image_size`` px,
    AAC audio) + wav (``sample_rate``) under ``cache_dir`` (default
    ``$MMSSL_CACHE/procedural_audio_visual``), keyed by every parameter. ``num_frames`` frames per
    clip are kept; ``clip_seconds``: the audio window of an item. ``eval_modality``: what
    ``eval_train`` / ``eval_test`` hold (``image`` frames or ``audio`` windows); ``augment``: random
    resized crop + flip of pretraining frames.
    """
    folder = generate_audio_visual_set(
        train_per_class,
        test_per_class,
        num_scenes,
        image_size,
        duration_s,
        sample_rate,
        fps,
        seed,
        cache_dir,
    )
    rows = read_manifest(folder)
    names = [""] * num_scenes
    splits: dict[str, list[tuple[Path, Path, int]]] = {"train": [], "test": []}
    for row in rows:
        label = int(row["label"])
        names[label] = row["class_name"]
        splits[row["split"]].append((folder / row["video"], folder / row["audio"], label))
    common = dict(image_size=image_size, num_frames=num_frames, sample_rate=sample_rate, class_names=names)
    train = AudioVisualClips(splits["train"], cache_key=f"{folder.name}_train", **common)  # type: ignore[arg-type]
    test = AudioVisualClips(splits["test"], cache_key=f"{folder.name}_test", **common)  # type: ignore[arg-type]
    return paired_bundle(
        train,
        test,
        num_classes=num_scenes,
        clip_seconds=clip_seconds,
        eval_modality=eval_modality,
        augment=augment,
        info={"dataset": "procedural_audio_visual", "root": str(folder)},
    )


def _sidecar_audio(video: Path) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        candidate = video.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def _videos_by_class(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """``folder/<class>/<video>`` -> (classes, [(video, label)]); a flat folder: one class ``all``."""

    def videos(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes:
        return classes, [(p, i) for i, c in enumerate(classes) for p in videos(folder / c)]
    return ["all"], [(p, 0) for p in videos(folder)]


def folder_key(paths: Sequence[Path], sample_rate: int) -> str:
    """A short content key for a list of files: names, sizes and modification times."""
    digest = hashlib.sha1(str(sample_rate).encode())
    for p in sorted(paths):
        stat = p.stat()
        digest.update(f"{p.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


@data_source(produces={IMAGE, AUDIO, LABEL, INDEX})
def paired_video_audio(
    root: str,
    image_size: int = 64,
    num_frames: int = 8,
    clip_seconds: float = 2.0,
    sample_rate: int = 16000,
    train_subdir: str = "train",
    test_subdir: str = "test",
    test_every: int = 5,
    eval_modality: str = "image",
    augment: bool = True,
    allow_silent: bool = False,
    skip_bad: bool = False,
    seed: int = 0,
) -> DataBundle:
    """Video files with sound: ``root/{train,test}/<class>/<video>``, or ``root/<class>/<video>``
    (every ``test_every``-th video of a class, in name order, is held out), or a flat folder of videos
    (one class). A sidecar audio file with the video's stem (``clip.wav`` next to ``clip.mp4``) is
    used instead of the video's own track.

    ``num_frames`` frames per video are kept at ``image_size`` px; ``clip_seconds``: the audio
    window of an item. ``allow_silent``: accept all-zero audio tracks (rejected by default, naming
    the file). ``skip_bad``: drop unreadable / soundless videos with a warning instead of raising.
    ``eval_modality``, ``augment`` as for ``procedural_audio_visual``.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"paired_video_audio root not found: {base}")
    if (base / train_subdir).is_dir() and (base / test_subdir).is_dir():
        classes, train_list = _videos_by_class(base / train_subdir)
        test_classes, test_list = _videos_by_class(base / test_subdir)
        if test_classes != classes:
            raise DataError(f"class folders differ between {base / train_subdir} and {base / test_subdir}")
    else:
        classes, videos = _videos_by_class(base)
        if test_every < 2:
            raise DataError(f"test_every must be >= 2, got {test_every}")
        seen: dict[int, int] = {}
        train_list, test_list = [], []
        for video, label in videos:
            rank = seen[label] = seen.get(label, -1) + 1
            (test_list if rank % test_every == test_every - 1 else train_list).append((video, label))
    if not train_list or not test_list:
        raise DataError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) for both splits under {base}")
    common = dict(
        image_size=image_size,
        num_frames=num_frames,
        sample_rate=sample_rate,
        skip_bad=skip_bad,
        allow_silent=allow_silent,
        class_names=classes,
    )
    splits = []
    for videos in (train_list, test_list):
        entries = [(v, _sidecar_audio(v), label) for v, label in videos]
        files = [v for v, _, _ in entries] + [a for _, a, _ in entries if a is not None]
        splits.append(AudioVisualClips(entries, cache_key=folder_key(files, sample_rate), **common))  # type: ignore[arg-type]
    return paired_bundle(
        splits[0],
        splits[1],
        num_classes=len(classes),
        clip_seconds=clip_seconds,
        eval_modality=eval_modality,
        augment=augment,
        info={"dataset": "paired_video_audio", "root": str(base)},
    )
