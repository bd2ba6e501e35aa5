"""Paired video + audio datasets: the procedural audio-visual set and folders of real videos.

Both builders read :class:`~mmssl.modalities.audio.av_clips.AudioVisualClips` and give the items of
:mod:`mmssl.modalities.audio.paired_items`: pretraining on a frame and the simultaneous sound.
``eval_train`` / ``eval_test`` hold the visual items by default (``eval_modality="audio"``: the audio
items). ``extras``, typed:

- :class:`~mmssl.data.extras.HeldOutPairs`: the held-out pairs (deterministic), for cross-modal retrieval;
- :class:`~mmssl.data.extras.LabelledSplits` ``"audio_eval"``: the audio evaluation items, always, so one
  bundle serves visual and audio N-shot evaluation (``modality_few_shot``);
- :class:`~mmssl.modalities.audio.av_clips.TrainingClips`: the training clips (whole-clip audio, for the
  ambient-sound targets).

``stats`` report the sizes, rates and the clips left out with ``skip_bad``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmssl.data import DataBundle
from mmssl.data.extras import HeldOutPairs, LabelledSplits
from mmssl.data.keys import IMAGE, INDEX, LABEL
from mmssl.data.source import data_source
from mmssl.errors import DataError
from mmssl.modalities.audio.av_clips import AudioVisualClips, TrainingClips
from mmssl.modalities.audio.clips import num_samples_for
from mmssl.modalities.audio.io import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from mmssl.modalities.audio.keys import AUDIO
from mmssl.modalities.audio.paired_items import PairedItems, clip_audio_items, frame_items
from mmssl.modalities.audio.procedural import generate_audio_visual_set, read_manifest

EVAL_MODALITIES: tuple[str, ...] = ("image", "audio")
#: the name of the audio evaluation splits (``modality_few_shot``'s default source for the audio tower)
AUDIO_EVAL = "audio_eval"


def paired_bundle(
    train: AudioVisualClips,
    test: AudioVisualClips,
    *,
    num_classes: int,
    clip_seconds: float,
    eval_modality: str,
    augment: bool,
    stats: dict[str, Any],
) -> DataBundle:
    """Wrap train / test clips into a DataBundle (see the module docstring)."""
    if eval_modality not in EVAL_MODALITIES:
        raise DataError(
            f"unknown eval_modality '{eval_modality}'; choose one of {', '.join(EVAL_MODALITIES)}"
        )
    n = num_samples_for(clip_seconds, train.sample_rate)
    audio_eval = LabelledSplits(
        AUDIO_EVAL, clip_audio_items(train, n), clip_audio_items(test, n), num_classes
    )
    if eval_modality == "image":
        eval_train, eval_test = frame_items(train), frame_items(test)
    else:
        eval_train, eval_test = audio_eval.train, audio_eval.test
    return DataBundle(
        pretrain=PairedItems(train, n, train=True, augment=augment),
        eval_train=eval_train,
        eval_test=eval_test,
        num_classes=num_classes,
        extras=(HeldOutPairs(PairedItems(test, n, train=False)), audio_eval, TrainingClips(train)),
        stats={
            "modality": "audiovisual",
            "eval_modality": eval_modality,
            "sample_rate": train.sample_rate,
            "clip_samples": n,
            "image_size": train.image_size,
            "class_names": train.class_names,
            "num_train": len(train),
            "num_test": len(test),
            "num_skipped": train.num_skipped + test.num_skipped,
            "bad_files": [str(p) for p in train.skipping.bad_files + test.skipping.bad_files],
            **stats,
        },
    )


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
        stats={"dataset": "procedural_audio_visual", "root": str(folder)},
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
        stats={"dataset": "paired_video_audio", "root": str(base)},
    )
