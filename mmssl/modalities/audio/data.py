"""Labelled audio datasets: the ESC-50 layout (or any folder + CSV) and spoken digits (FSDD).

Base dataset (:class:`AudioClips`) yields ``(wave float32 [S_full], label)``: the whole clip, mono,
at ``sample_rate``. Small wrappers turn it into what the toolkit contracts expect:

- evaluation: ``{"input": wave [S], "label": int}`` with a deterministic centre crop / zero pad to
  ``S = round(clip_seconds * sample_rate)``; batches are ``[B, S]`` waveforms, the input of
  ``audio_cnn`` (so the generic ``few_shot`` / ``knn`` / ``linear`` evaluators work on audio as is);
- pretraining, ``views=None``: ``{"audio": wave [S] (random crop), "label": int, "index": i}``;
- pretraining, ``views="crops"``: ``{"views": [a1, a2], "index": i}``, two random crops with a random
  gain each (segments of one clip as positives, as in COLA, Saeed et al. 2021), for the generic
  two-view methods (``simclr``, ``moco``, ``byol``).

Layouts:

- ESC-50 (Piczak 2015): ``root/meta/esc50.csv`` with columns ``filename, fold, target, category``
  (others ignored) and the clips in ``root/audio/``. ``test_folds`` pick the test clips, the other
  folds train (the standard protocol is 5-fold cross-validation: one run per test fold). A plain
  folder + CSV works too: ``filename`` plus a label column (``target`` as integers, else ``label`` /
  ``category`` names, sorted into ids) and either ``fold`` or ``split`` (``train`` / ``test``).
- FSDD: ``root/recordings/{digit}_{speaker}_{index}.wav`` (or the wavs directly in ``root``); the
  label is the digit. Official split: indices 0-4 test, the rest train; ``test_speakers`` gives a
  speaker-disjoint split instead.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.data.keys import INDEX, LABEL, VIEWS
from mmssl.data.source import data_source
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.audio.io import center_crop, load_audio, random_crop
from mmssl.modalities.audio.keys import AUDIO

log = logging.getLogger(__name__)

AUDIO_VIEWS: tuple[str, ...] = ("crops",)


def num_samples_for(seconds: float, sample_rate: int) -> int:
    n = int(round(float(seconds) * int(sample_rate)))
    if n < 1:
        raise DataError(
            f"clip_seconds * sample_rate must give at least one sample, got {seconds} s at {sample_rate} Hz"
        )
    return n


class AudioClips(Dataset):
    """Audio (or video) files with labels -> ``(wave float32 [S], label)``, mono at ``sample_rate``.

    ``preload=True`` decodes every file once at construction (small sets: FSDD, evaluation splits);
    otherwise files are decoded on access. A file that cannot be decoded raises
    :class:`~mmssl.errors.CorruptFileError` naming it; with ``skip_bad=True`` it is skipped with a
    warning instead (when preloading it is dropped from the list; on access the next readable clip
    is returned) and ``num_skipped`` counts the distinct bad files this process has seen.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, int]],
        sample_rate: int = 16000,
        *,
        preload: bool = False,
        skip_bad: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not samples:
            raise DataError("no audio files given")
        self.sample_rate, self.skip_bad = int(sample_rate), skip_bad
        self.samples: list[tuple[Path, int]] = [(Path(p), int(y)) for p, y in samples]
        self.class_names = list(class_names) if class_names is not None else None
        self.bad_files: set[Path] = set()
        self._waves: list[Tensor] | None = None
        if preload:
            kept, waves = [], []
            for path, label in self.samples:
                wave = self._read_or_skip(path)
                if wave is not None:
                    kept.append((path, label))
                    waves.append(wave)
            if not kept:
                raise DataError(
                    f"no readable audio among {len(self.samples)} files (first: {self.samples[0][0]})"
                )
            self.samples, self._waves = kept, waves
        self.targets: list[int] = [y for _, y in self.samples]

    @property
    def num_skipped(self) -> int:
        return len(self.bad_files)

    def _read_or_skip(self, path: Path) -> Tensor | None:
        try:
            return load_audio(path, self.sample_rate, mono=True)[0][0]
        except CorruptFileError as err:
            if not self.skip_bad:
                raise
            if path not in self.bad_files:
                self.bad_files.add(path)
                log.warning("skipping %s", err)
            return None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if self._waves is not None:
            return self._waves[index], self.samples[index][1]
        n = len(self.samples)
        for offset in range(n):
            path, label = self.samples[(index + offset) % n]
            wave = self._read_or_skip(path)
            if wave is not None:
                return wave, label
        raise DataError(
            f"no readable audio file: all {n} files failed to decode (first: {self.samples[0][0]})"
        )


# ---------------------------------------------------------------------------- contract wrappers


class LabelledAudio(Dataset):
    """``{"input": centre_crop(wave, num_samples), "label": int}``: the evaluation contract."""

    def __init__(self, base: Dataset, num_samples: int) -> None:
        self.base, self.num_samples = base, int(num_samples)
        self.targets: list[int] = list(getattr(base, "targets", []))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        wave, label = self.base[index]
        return {"input": center_crop(wave, self.num_samples), "label": int(label)}


class AudioPretrain(Dataset):
    """``{"audio": random_crop(wave), "label": int, "index": i}`` for single-clip methods."""

    def __init__(self, base: Dataset, num_samples: int) -> None:
        self.base, self.num_samples = base, int(num_samples)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        wave, label = self.base[index]
        return {"audio": random_crop(wave, self.num_samples), "label": int(label), "index": index}


class AudioTwoCrops(Dataset):
    """``{"views": [a1, a2], "index": i}``: two random crops of one clip, each with a random gain
    drawn uniformly in ``[-gain_db, +gain_db]`` dB (loudness alone must not tell clips apart)."""

    def __init__(self, base: Dataset, num_samples: int, gain_db: float = 6.0) -> None:
        self.base, self.num_samples, self.gain_db = base, int(num_samples), float(gain_db)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _view(self, wave: Tensor) -> Tensor:
        gain = 10 ** ((torch.rand(()).item() * 2 - 1) * self.gain_db / 20)
        return random_crop(wave, self.num_samples) * gain

    def __getitem__(self, index: int) -> dict[str, Any]:
        wave, _ = self.base[index]
        return {"views": [self._view(wave), self._view(wave)], "index": index}


def _check_views(views: str | None) -> str | None:
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in AUDIO_VIEWS:
        raise DataError(f"unknown audio views '{views}'; choose one of {', '.join(AUDIO_VIEWS)} or null")
    return views


def audio_pretrain_dataset(base: Dataset, views: str | None, num_samples: int) -> Dataset:
    """The pretraining wrapper for ``views`` (see the module docstring)."""
    views = _check_views(views)
    return AudioPretrain(base, num_samples) if views is None else AudioTwoCrops(base, num_samples)


def audio_bundle(
    train: AudioClips,
    test: AudioClips,
    *,
    num_classes: int,
    clip_seconds: float,
    views: str | None,
    info: dict[str, Any],
) -> DataBundle:
    """Wrap train / test clips into a DataBundle (pretraining on the train clips)."""
    n = num_samples_for(clip_seconds, train.sample_rate)
    return DataBundle(
        pretrain=audio_pretrain_dataset(train, views, n),
        eval_train=LabelledAudio(train, n),
        eval_test=LabelledAudio(test, n),
        num_classes=num_classes,
        info={
            "modality": "audio",
            "sample_rate": train.sample_rate,
            "clip_samples": n,
            "views": _check_views(views),
            "num_train": len(train),
            "num_test": len(test),
            "class_names": train.class_names,
            **info,
        },
    )


# --------------------------------------------------------------------------------- CSV layout


@dataclass(frozen=True)
class ClipRow:
    """One row of a clip table: the file, its class id and name, and its fold or split."""

    path: Path
    label: int
    category: str
    fold: str


_LABEL_COLUMNS = ("target", "label", "category", "class")


def read_clip_table(csv_path: str | Path, audio_dir: str | Path) -> tuple[list[ClipRow], list[str]]:
    """Parse an ESC-50-style CSV -> (rows, class names indexed by label id).

    Needs ``filename``; the label is ``target`` (integer ids; names from ``category`` when present)
    or else the first of ``label`` / ``category`` / ``class`` (names, ids in sorted order). The fold is
    ``fold`` or ``split`` (empty when neither exists). Errors name the file and the line.
    """
    csv_path, audio_dir = Path(csv_path), Path(audio_dir)
    if not csv_path.is_file():
        raise DataError(f"clip table not found: {csv_path}")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        raw = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if "filename" not in columns:
        raise DataError(f"{csv_path} has no 'filename' column (columns: {', '.join(columns) or 'none'})")
    label_col = next((c for c in _LABEL_COLUMNS if c in columns), None)
    if label_col is None:
        raise DataError(f"{csv_path} has no label column: expected one of {', '.join(_LABEL_COLUMNS)}")
    fold_col = "fold" if "fold" in columns else "split" if "split" in columns else None
    if not raw:
        raise DataError(f"{csv_path} lists no clips")
    if label_col == "target":
        ids = []
        for line, row in enumerate(raw, start=2):
            try:
                ids.append(int(row["target"]))
            except ValueError:
                raise DataError(f"{csv_path}:{line}: target '{row['target']}' is not an integer") from None
        names: dict[int, str] = {}
        for i, row in zip(ids, raw):
            names.setdefault(i, row.get("category") or str(i))
        if min(ids) < 0:
            raise DataError(f"{csv_path}: negative target {min(ids)}")
        class_names = [names.get(i, str(i)) for i in range(max(ids) + 1)]
    else:
        class_names = sorted({row[label_col] for row in raw})
        index = {c: i for i, c in enumerate(class_names)}
        ids = [index[row[label_col]] for row in raw]
    rows = []
    for line, (row, label) in enumerate(zip(raw, ids), start=2):
        if not row["filename"]:
            raise DataError(f"{csv_path}:{line}: empty filename")
        path = audio_dir / row["filename"]
        if not path.is_file():
            raise DataError(f"{csv_path}:{line}: listed file not found: {path}")
        rows.append(ClipRow(path, label, class_names[label], row.get(fold_col, "") if fold_col else ""))
    return rows, class_names


def split_rows(
    rows: Sequence[ClipRow], test_folds: Sequence[int | str], train_folds: Sequence[int | str] | None = None
) -> tuple[list[ClipRow], list[ClipRow]]:
    """``(train, test)``: rows whose fold is in ``test_folds`` test; the others (or ``train_folds``) train."""
    test_set = {str(f) for f in test_folds}
    train_set = None if train_folds is None else {str(f) for f in train_folds}
    test = [r for r in rows if r.fold in test_set]
    train = [r for r in rows if r.fold not in test_set and (train_set is None or r.fold in train_set)]
    return train, test


def pretrain_keys(options: Mapping[str, Any]) -> set[str]:
    """``views: crops`` gives two crops per clip (``views``); otherwise one crop with its label."""
    return {VIEWS, INDEX} if _check_views(options["views"]) else {AUDIO, LABEL, INDEX}


@data_source(produces=pretrain_keys)
def audio_folder_csv(
    root: str,
    csv_file: str = "meta/esc50.csv",
    audio_dir: str = "audio",
    test_folds: Sequence[int | str] = (5,),
    train_folds: Sequence[int | str] | None = None,
    sample_rate: int = 16000,
    clip_seconds: float = 5.0,
    views: str | None = None,
    preload: bool = False,
    skip_bad: bool = False,
    seed: int = 0,
) -> DataBundle:
    """Labelled clips listed in a CSV: the ESC-50 layout by default (``root/meta/esc50.csv`` +
    ``root/audio/``), or any folder + CSV (``csv_file``, ``audio_dir`` relative to ``root``).

    ``test_folds``: values of the ``fold`` (or ``split``) column that form the test set (ESC-50:
    one of 1-5; a ``split`` column: ``[test]``); ``train_folds``: restrict training to these (default:
    every other fold). ``clip_seconds``: evaluation / pretraining crop (ESC-50 clips are 5 s).
    ``views``: null (single clips) or ``crops`` (two crops, for two-view methods). ``preload``: decode
    everything once up front. ``skip_bad``: skip undecodable files with a warning.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"audio_folder_csv root not found: {base}")
    rows, class_names = read_clip_table(base / csv_file, base / audio_dir)
    train_rows, test_rows = split_rows(rows, test_folds, train_folds)
    folds = sorted({r.fold for r in rows})
    if not train_rows or not test_rows:
        raise DataError(
            f"{base / csv_file}: test_folds {list(test_folds)} leave {len(train_rows)} train and "
            f"{len(test_rows)} test clips (folds present: {', '.join(folds) or 'none'})"
        )
    common = dict(sample_rate=sample_rate, preload=preload, skip_bad=skip_bad, class_names=class_names)
    train = AudioClips([(r.path, r.label) for r in train_rows], **common)  # type: ignore[arg-type]
    test = AudioClips([(r.path, r.label) for r in test_rows], **common)  # type: ignore[arg-type]
    return audio_bundle(
        train,
        test,
        num_classes=len(class_names),
        clip_seconds=clip_seconds,
        views=views,
        info={"dataset": "audio_folder_csv", "root": str(base), "test_folds": [str(f) for f in test_folds]},
    )


# ------------------------------------------------------------------------------------------ FSDD


def parse_fsdd_name(path: Path) -> tuple[int, str, int]:
    """``{digit}_{speaker}_{index}.wav`` -> (digit, speaker, index); DataError naming the file otherwise."""
    parts = path.stem.split("_")
    try:
        digit, index = int(parts[0]), int(parts[-1])
        speaker = "_".join(parts[1:-1])
        if len(parts) < 3 or not 0 <= digit <= 9 or not speaker:
            raise ValueError
    except ValueError:
        raise DataError(f"not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav): {path}") from None
    return digit, speaker, index


def fsdd_split(
    files: Sequence[Path], test_speakers: Sequence[str] | None = None, test_below_index: int = 5
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """``(train, test)`` lists of ``(path, digit)``: by recording index (official: 0-4 test) or by speaker."""
    train, test = [], []
    for path in files:
        digit, speaker, index = parse_fsdd_name(path)
        is_test = speaker in test_speakers if test_speakers is not None else index < test_below_index
        (test if is_test else train).append((path, digit))
    return train, test


@data_source(produces=pretrain_keys)
def fsdd(
    root: str,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    test_speakers: Sequence[str] | None = None,
    views: str | None = None,
    preload: bool = True,
    skip_bad: bool = False,
    seed: int = 0,
) -> DataBundle:
    """Free Spoken Digit Dataset (10 digits, 8 kHz mono recordings), resampled to ``sample_rate``.

    ``root``: the dataset folder (with ``recordings/``) or the recordings folder itself. Split:
    the official one (recording indices 0-4 test, others train) unless ``test_speakers`` names the
    held-out speakers. ``clip_seconds``: crop / zero-pad length (the recordings are 0.1-2.3 s).
    ``views``, ``skip_bad`` as for ``audio_folder_csv``; ``preload`` (default on: the set is small).
    """
    base = Path(root).expanduser()
    folder = base / "recordings" if (base / "recordings").is_dir() else base
    if not folder.is_dir():
        raise DataError(f"fsdd root not found: {base}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not files:
        raise DataError(f"no .wav recordings in {folder}")
    train_list, test_list = fsdd_split(files, test_speakers)
    if not train_list or not test_list:
        raise DataError(
            f"fsdd split of {folder} leaves {len(train_list)} train and {len(test_list)} test files"
        )
    names = [str(d) for d in range(10)]
    common = dict(sample_rate=sample_rate, preload=preload, skip_bad=skip_bad, class_names=names)
    train = AudioClips(train_list, **common)  # type: ignore[arg-type]
    test = AudioClips(test_list, **common)  # type: ignore[arg-type]
    return audio_bundle(
        train,
        test,
        num_classes=10,
        clip_seconds=clip_seconds,
        views=views,
        info={"dataset": "fsdd", "root": str(folder), "test_speakers": list(test_speakers or [])},
    )
