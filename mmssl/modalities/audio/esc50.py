"""Labelled clips listed in a CSV: the ESC-50 layout (Piczak 2015), or any folder + CSV.

ESC-50: ``root/meta/esc50.csv`` with columns ``filename, fold, target, category`` (others ignored) and
the clips in ``root/audio/``. ``test_folds`` pick the test clips, the other folds train (the standard
protocol is 5-fold cross-validation: one run per test fold). A plain folder + CSV works too:
``filename`` plus a label column (``target`` as integers, else ``label`` / ``category`` names, sorted
into ids) and either ``fold`` or ``split`` (``train`` / ``test``). Items: :mod:`mmssl.modalities.audio.crops`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmssl.data import DataBundle
from mmssl.data.source import data_source
from mmssl.errors import DataError
from mmssl.modalities.audio.clips import AudioClips
from mmssl.modalities.audio.crops import (
    audio_bundle,
    has_root,
    refuse_root_only_options,
    root_or_shards_keys,
)
from mmssl.modalities.audio.shards import audio_bundle_options
from mmssl.modalities.audio.views import AudioViewOptions


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


audio_folder_csv_keys = root_or_shards_keys("audio_folder_csv", "a folder with a clip table")


@data_source(produces=audio_folder_csv_keys, labelled=has_root)
def audio_folder_csv(
    root: str | None = None,
    csv_file: str = "meta/esc50.csv",
    audio_dir: str = "audio",
    test_folds: Sequence[int | str] = (5,),
    train_folds: Sequence[int | str] | None = None,
    sample_rate: int = 16000,
    clip_seconds: float = 5.0,
    views: str | None = None,
    view_options: AudioViewOptions | None = None,
    preload: bool = False,
    skip_bad: bool = False,
    seed: int = 0,
    shards: str | None = None,
    shuffle_buffer: int = 1000,
) -> DataBundle:
    """Labelled clips listed in a CSV: the ESC-50 layout by default (``root/meta/esc50.csv`` +
    ``root/audio/``), or any folder + CSV (``csv_file``, ``audio_dir`` relative to ``root``).

    ``test_folds``: values of the ``fold`` (or ``split``) column that form the test set (ESC-50:
    one of 1-5; a ``split`` column: ``[test]``); ``train_folds``: restrict training to these (default:
    every other fold). ``clip_seconds``: evaluation / pretraining crop (ESC-50 clips are 5 s).
    ``views``: null (single clips) or ``crops`` (two crops, for two-view methods). ``view_options``:
    the crops' gain and background mixing (:class:`~mmssl.modalities.audio.views.AudioViewOptions`).
    ``preload``: decode everything once up front. ``skip_bad``: skip undecodable files with a warning.

    ``shards``: pretrain on an audio shard set (``data_tools/make_shards.py audio``; labels in the shards
    are not used) instead of the training folds: streamed (:class:`~mmssl.data.shards.ShardStream`: split
    over processes and data-loader workers, block shuffle of ``shuffle_buffer`` clips, exact resume) and
    decoded from memory at ``sample_rate``; background clips for ``view_options.mix_ratio`` come from the
    block being streamed (:mod:`~mmssl.modalities.audio.shards`). ``root`` then gives the evaluation folds
    only ("pretrain on AudioSet shards, evaluate on ESC-50"); without it there are no evaluation sets.
    """
    audio_folder_csv_keys({"root": root, "shards": shards, "views": views})  # also when called from Python
    common_bundle = audio_bundle_options(
        shards,
        sample_rate,
        clip_seconds=clip_seconds,
        views=views,
        view_options=view_options,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
    )
    if root is None:  # shards only (the recipe loader refused neither): pretraining, no evaluation
        refuse_root_only_options(
            audio_folder_csv,
            csv_file=csv_file,
            audio_dir=audio_dir,
            test_folds=test_folds,
            train_folds=train_folds,
            preload=preload,
            skip_bad=skip_bad,
        )
        return audio_bundle(None, None, num_classes=0, stats={"dataset": "audio_folder_csv"}, **common_bundle)
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
        stats={"dataset": "audio_folder_csv", "root": str(base), "test_folds": [str(f) for f in test_folds]},
        **common_bundle,
    )
