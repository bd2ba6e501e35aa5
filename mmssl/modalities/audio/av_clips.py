"""Preloaded paired video + audio clips, and the extra that hands the training clips to a method.

:class:`AudioVisualClips` decodes every clip once at construction: ``num_frames`` frames evenly spaced
in time (uint8 ``[T, 3, S, S]``, shorter side scaled to ``S`` then centre square), their times, and the
whole audio track (mono float32 at ``sample_rate``; from a sidecar audio file with the same stem when
there is one, else the video's own track). Everything is preloaded, which suits folders of a few hundred
short clips (the procedural set: about 30 MB); for larger collections extract frames and audio offline
first.

:class:`TrainingClips` (in ``DataBundle.extras``) is the training clip set behind the pretraining items,
index-aligned with them: whole-clip audio for methods that summarise each clip (the ambient-sound
targets of Owens et al., ECCV 2016; ``cache_key`` names its contents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.audio.io import load_audio, read_video_frames


class AudioVisualClips(Dataset):
    """Preloaded ``(video, audio or None, label)`` clips (see the module docstring).

    Items: ``(frames uint8 [T, 3, S, S], frame times float64 [T] in s, audio float32 [S_full], label)``.
    A clip that cannot be decoded (or has no audio) raises naming the file; with ``skip_bad=True``
    it is dropped with a warning (:class:`~mmssl.data.SkipBadFiles`) and counted in ``num_skipped``.
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
        self.skipping = SkipBadFiles(skip_bad)
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
            except (CorruptFileError, DataError) as err:  # DataError: no video / audio stream
                self.skipping.record(err, video)
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
        return self.skipping.num_skipped

    def clip_audio(self, index: int) -> Tensor:
        """The whole audio track of clip ``index`` (mono, ``sample_rate``)."""
        return self.audio[index]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, int]:
        return self.frames[index], self.times[index], self.audio[index], self.targets[index]


@dataclass(frozen=True)
class TrainingClips:
    """The training :class:`AudioVisualClips`, index-aligned with the bundle's pretraining items."""

    clips: AudioVisualClips
