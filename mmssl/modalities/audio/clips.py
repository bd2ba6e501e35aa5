"""Labelled audio clips: ``(wave float32 [S_full], label)``, the whole clip, mono at ``sample_rate``.

The base dataset of every labelled audio set (:mod:`mmssl.modalities.audio.esc50`,
:mod:`mmssl.modalities.audio.fsdd`); :mod:`mmssl.modalities.audio.crops` turns it into batch items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data import SkipBadFiles
from mmssl.errors import DataError
from mmssl.modalities.audio.io import load_audio


def num_samples_for(seconds: float, sample_rate: int) -> int:
    """Samples in ``seconds`` at ``sample_rate`` (rounded); a DataError when that is not even one."""
    n = int(round(float(seconds) * int(sample_rate)))
    if n < 1:
        raise DataError(
            f"clip_seconds * sample_rate must give at least one sample, got {seconds} s at {sample_rate} Hz"
        )
    return n


def _decodes(path: Path) -> bool:
    """True when ``path`` decodes (at its own rate: a check, nothing kept); CorruptFileError otherwise."""
    load_audio(path, None, mono=False)
    return True


class AudioClips(Dataset):
    """Audio (or video) files with labels -> ``(wave float32 [S], label)``, mono at ``sample_rate``.

    ``preload=True`` decodes every file once at construction (small sets: FSDD, evaluation splits);
    otherwise files are decoded on access. A file that cannot be decoded raises
    :class:`~mmssl.errors.CorruptFileError` naming it; with ``skip_bad=True`` every file is decoded once
    at construction (when not preloading: at its own rate, in ``workers`` threads, nothing kept) and the
    bad ones are logged (:class:`~mmssl.data.SkipBadFiles`), left out of the index (no other clip ever
    stands in for one) and listed in ``bad_files`` / counted in ``num_skipped``.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, int]],
        sample_rate: int = 16000,
        *,
        preload: bool = False,
        skip_bad: bool = False,
        class_names: Sequence[str] | None = None,
        workers: int | None = None,
    ) -> None:
        if not samples:
            raise DataError("no audio files given")
        self.sample_rate = int(sample_rate)
        self.samples: list[tuple[Path, int]] = [(Path(p), int(y)) for p, y in samples]
        self.class_names = list(class_names) if class_names is not None else None
        self.skipping = SkipBadFiles(skip_bad)
        self._waves: list[Tensor] | None = None
        if preload:
            kept = self.skipping.keep_readable(self.samples, lambda s: s[0], lambda s: self.read(s[0]))
            if not kept:
                raise DataError(
                    f"no readable audio among {len(self.samples)} files (first: {self.samples[0][0]})"
                )
            self.samples = [sample for sample, _ in kept]
            self._waves = [wave for _, wave in kept]
        elif skip_bad:
            checked = self.skipping.keep_readable(
                self.samples, lambda s: s[0], lambda s: _decodes(s[0]), workers or min(8, os.cpu_count() or 1)
            )
            if not checked:
                raise DataError(
                    f"no readable audio among {len(self.samples)} files (first: {self.samples[0][0]})"
                )
            self.samples = [sample for sample, _ in checked]
        self.targets: list[int] = [y for _, y in self.samples]
        self.paths = [p for p, _ in self.samples]
        self.where = os.path.commonpath([str(p) for p in self.paths])

    @property
    def num_skipped(self) -> int:
        return self.skipping.num_skipped

    @property
    def bad_files(self) -> list[Path]:
        return self.skipping.bad_files

    def read(self, path: Path) -> Tensor:
        """The whole clip at ``path``: mono float32 ``[S]`` at ``sample_rate``."""
        return load_audio(path, self.sample_rate, mono=True)[0][0]

    def _labelled_wave(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.read(path), label

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if self._waves is not None:
            return self._waves[index], self.samples[index][1]
        return self._labelled_wave(index)  # a file broken since it was checked raises, naming it
