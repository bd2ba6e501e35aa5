"""The Free Spoken Digit Dataset (FSDD): 10 spoken digits, 8 kHz mono recordings.

``root/recordings/{digit}_{speaker}_{index}.wav`` (or the wavs directly in ``root``); the label is the
digit. Official split: indices 0-4 test, the rest train; ``test_speakers`` gives a speaker-disjoint
split instead. Items: :mod:`mmssl.modalities.audio.crops`.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def _empty_split_message(
    files: Sequence[Path], folder: Path, test_speakers: Sequence[str] | None, n_train: int, n_test: int
) -> str:
    """Why the split of ``folder`` leaves one side empty, naming the option that chose it."""
    speakers = sorted({parse_fsdd_name(p)[1] for p in files})
    if test_speakers is None:
        rule = "the official split (recording indices 0-4 test, the rest train)"
        hint = "set test_speakers to hold out whole speakers instead"
    else:
        rule = f"test_speakers={list(test_speakers)}"
        unknown = [s for s in test_speakers if s not in speakers]
        if unknown:
            hint = f"no recording there is by {', '.join(repr(s) for s in unknown)}"
        elif n_train == 0:
            hint = "every speaker there is held out; leave at least one for training"
        else:
            hint = "name at least one speaker to hold out"
    return (
        f"fsdd: {rule} leaves {n_train} training and {n_test} test recordings in {folder} "
        f"(speakers there: {', '.join(speakers)}); {hint}"
    )


fsdd_keys = root_or_shards_keys("fsdd", "the FSDD folder")


@data_source(produces=fsdd_keys, labelled=has_root)
def fsdd(
    root: str | None = None,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    test_speakers: Sequence[str] | None = None,
    views: str | None = None,
    view_options: AudioViewOptions | None = None,
    preload: bool = True,
    skip_bad: bool = False,
    seed: int = 0,
    shards: str | None = None,
    shuffle_buffer: int = 1000,
) -> DataBundle:
    """Free Spoken Digit Dataset (10 digits, 8 kHz mono recordings), resampled to ``sample_rate``.

    ``root``: the dataset folder (with ``recordings/``) or the recordings folder itself. Split:
    the official one (recording indices 0-4 test, others train) unless ``test_speakers`` names the
    held-out speakers (a list; one name alone is read as a list of one). A split that leaves no training
    or no test recording raises :class:`~mmssl.errors.DataError` here, before any file is decoded,
    naming ``test_speakers``, the folder and the speakers found there. ``clip_seconds``: crop /
    zero-pad length (the recordings are 0.1-2.3 s).
    ``views``, ``view_options``, ``skip_bad`` as for ``audio_folder_csv``; ``preload`` (default on: the
    set is small).

    ``shards``: pretrain on audio shards (``data_tools/make_shards.py audio``) instead of the training
    split, as ``audio_folder_csv``'s option; ``root`` is then optional and gives the evaluation split only.
    """
    fsdd_keys({"root": root, "shards": shards, "views": views})  # also when called from Python
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
        refuse_root_only_options(fsdd, test_speakers=test_speakers, preload=preload, skip_bad=skip_bad)
        return audio_bundle(None, None, num_classes=0, stats={"dataset": "fsdd"}, **common_bundle)
    base = Path(root).expanduser()
    folder = base / "recordings" if (base / "recordings").is_dir() else base
    if not folder.is_dir():
        raise DataError(f"fsdd root not found: {base}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not files:
        raise DataError(f"no .wav recordings in {folder}")
    if isinstance(test_speakers, str):  # one speaker written without a list
        test_speakers = [test_speakers]
    train_list, test_list = fsdd_split(files, test_speakers)
    if not train_list or not test_list:
        raise DataError(_empty_split_message(files, folder, test_speakers, len(train_list), len(test_list)))
    names = [str(d) for d in range(10)]
    common = dict(sample_rate=sample_rate, preload=preload, skip_bad=skip_bad, class_names=names)
    train = AudioClips(train_list, **common)  # type: ignore[arg-type]
    test = AudioClips(test_list, **common)  # type: ignore[arg-type]
    return audio_bundle(
        train,
        test,
        num_classes=10,
        stats={"dataset": "fsdd", "root": str(folder), "test_speakers": list(test_speakers or [])},
        **common_bundle,
    )
