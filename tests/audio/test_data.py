"""Labelled audio datasets: ESC-50 layout on a tmp CSV over real clips, FSDD splits, encoders on them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmssl.errors import DataError
from mmssl.eval import few_shot_evaluator, knn_evaluator
from mmssl.eval.context import EvalContext
from mmssl.eval.options import FewShotOptions, KNNOptions
from mmssl.modalities.audio.encoders import AudioCNN
from mmssl.modalities.audio.esc50 import audio_folder_csv, read_clip_table
from mmssl.modalities.audio.features import LogMel
from mmssl.modalities.audio.fsdd import fsdd, parse_fsdd_name
from mmssl.registry import DATASETS, ENCODERS

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FREESOUND = DATA / "audio" / "ibm_max_freesound_samples"
FSDD = DATA / "audio" / "fsdd"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sample data not found: {path}")
    return path


def _esc50_layout(tmp_path: Path, names: list[str], categories: list[str]) -> Path:
    """An ESC-50-shaped folder: meta/esc50.csv + audio/ holding links to real clips."""
    root = tmp_path / "esc"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for i, name in enumerate(names):
        link = root / "audio" / f"{i + 1}-{name}"
        link.symlink_to((_need(FREESOUND) / name).resolve())
        category = categories[i % len(categories)]
        rows.append([link.name, i % 5 + 1, categories.index(category), category, "False", 100 + i, "A"])
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return root


def test_esc50_csv_layout_folds_and_items(tmp_path: Path) -> None:
    names = [
        "applause.wav",
        "birds1.wav",
        "car_engine.wav",
        "gunshots.wav",
        "rain.wav",
        "typing.wav",
        "piano.wav",
    ]
    root = _esc50_layout(tmp_path, names, ["dog", "rain"])
    rows, classes = read_clip_table(root / "meta/esc50.csv", root / "audio")
    assert classes == ["dog", "rain"] and [r.fold for r in rows] == ["1", "2", "3", "4", "5", "1", "2"]
    assert [r.label for r in rows] == [0, 1, 0, 1, 0, 1, 0]
    bundle = audio_folder_csv(str(root), test_folds=[1], sample_rate=8000, clip_seconds=0.5)
    assert (len(bundle.eval_train), len(bundle.eval_test)) == (5, 2)  # fold 1 holds clips 1 and 6
    item = bundle.eval_test[1]
    assert item["input"].shape == (4000,) and item["label"] == 1  # typing.wav, resampled from 48 kHz
    assert bundle.num_classes == 2 and bundle.stats["class_names"] == ["dog", "rain"]
    pre = bundle.pretrain[0]
    assert pre["audio"].shape == (4000,) and pre["index"] == 0
    two = audio_folder_csv(
        str(root), test_folds=[5], train_folds=[1, 2], views="crops", clip_seconds=0.25, sample_rate=8000
    )
    assert len(two.pretrain) == 4 and [v.shape for v in two.pretrain[0]["views"]] == [(2000,), (2000,)]
    with pytest.raises(DataError, match="test_folds"):
        audio_folder_csv(str(root), test_folds=[9])


def test_plain_folder_csv_with_names_and_split(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in ("rain.wav", "gunshots.wav", "piano.wav"):
        (folder / name).symlink_to((_need(FREESOUND) / name).resolve())
    (folder / "labels.csv").write_text(
        "filename,label,split\nrain.wav,weather,train\ngunshots.wav,bang,train\npiano.wav,weather,test\n"
    )
    bundle = DATASETS.get("audio_folder_csv")(
        root=str(folder),
        csv_file="labels.csv",
        audio_dir=".",
        test_folds=["test"],
        sample_rate=8000,
        clip_seconds=1.0,
    )
    assert bundle.stats["class_names"] == ["bang", "weather"]  # names sorted into ids
    assert bundle.eval_test[0]["label"] == 1 and [bundle.eval_train[i]["label"] for i in range(2)] == [1, 0]


def test_csv_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("file,target\nx.wav,0\n")
    with pytest.raises(DataError, match="a.csv has no 'filename' column"):
        read_clip_table(tmp_path / "a.csv", tmp_path)
    (tmp_path / "b.csv").write_text("filename,target,fold\nmissing.wav,0,1\n")
    with pytest.raises(DataError, match="b.csv:2: listed file not found: .*missing.wav"):
        read_clip_table(tmp_path / "b.csv", tmp_path)
    (tmp_path / "c.csv").write_text("filename,target\nx.wav,dog\n")
    with pytest.raises(DataError, match="c.csv:2: target 'dog' is not an integer"):
        read_clip_table(tmp_path / "c.csv", tmp_path)


def test_fsdd_names_and_splits() -> None:
    assert parse_fsdd_name(Path("7_jackson_31.wav")) == (7, "jackson", 31)
    with pytest.raises(DataError, match="not an FSDD file name"):
        parse_fsdd_name(Path("jackson.wav"))
    bundle = fsdd(str(_need(FSDD)), sample_rate=8000, clip_seconds=0.5)
    # 4 speakers x 10 digits x indices 0-9; official split: indices 0-4 are test.
    assert (len(bundle.eval_train), len(bundle.eval_test), bundle.num_classes) == (200, 200, 10)
    counts = torch.bincount(torch.tensor(bundle.eval_test.targets), minlength=10)
    assert counts.tolist() == [20] * 10
    assert bundle.eval_train[0]["input"].shape == (4000,)
    by_speaker = fsdd(str(FSDD), sample_rate=8000, clip_seconds=0.5, test_speakers=["theo"])
    assert (len(by_speaker.eval_train), len(by_speaker.eval_test)) == (300, 100)


def test_logmel_and_audio_cnn_contract() -> None:
    logmel = LogMel(sample_rate=16000, n_mels=32)
    spec = logmel(torch.randn(2, 16000))
    assert spec.shape == (2, 1, 32, logmel.num_frames(16000)) == (2, 1, 32, 101)
    # Log of the mel power: a 6 dB louder input shifts every bin by log(4).
    noise = torch.randn(1, 800, generator=torch.Generator().manual_seed(0))
    shift = logmel(2 * noise) - logmel(noise)
    torch.testing.assert_close(
        shift, torch.full_like(shift, float(torch.log(torch.tensor(4.0)))), atol=1e-3, rtol=0
    )
    encoder = ENCODERS.build("audio_cnn", n_mels=32, widths=(8, 16), sample_rate=16000)
    assert ENCODERS.modality_of("audio_cnn") == "audio"
    out = encoder(torch.randn(3, 16000))
    assert out["global"].shape == (3, 16) and out["tokens"].shape[0::2] == (3, 16) and encoder.out_dim == 16
    encoder.eval()
    wave = torch.randn(2, 8000)
    torch.testing.assert_close(encoder(wave)["global"], encoder(encoder.spectrogram(wave))["global"])
    torch.testing.assert_close(encoder(wave)["global"], encoder(wave[:, None])["global"])
    with pytest.raises(ValueError, match="log-mel input must be"):
        encoder(torch.randn(2, 1, 20, 50))


def test_generic_few_shot_and_knn_evaluators_work_on_audio(tmp_path: Path) -> None:
    bundle = fsdd(str(_need(FSDD)), sample_rate=8000, clip_seconds=0.5, test_speakers=["theo"])
    torch.manual_seed(0)
    encoder = AudioCNN(sample_rate=8000, n_mels=32, n_fft=256, hop_length=80, widths=(8, 16))
    shots = few_shot_evaluator(
        encoder, bundle, EvalContext(device="cpu", seed=0), FewShotOptions(shots=[1], seeds=2, epochs=20)
    )
    assert set(shots) == {"fewshot_1_mean", "fewshot_1_std"} and 0 <= shots["fewshot_1_mean"] <= 1
    knn = knn_evaluator(encoder, bundle, EvalContext(device="cpu"), KNNOptions(k=5))
    assert 0.1 < knn["knn_top1"] <= 1.0  # even random conv features beat chance on spoken digits


def _fsdd_names(folder: Path, speakers: list[str]) -> Path:
    """FSDD-named recordings (digits 0 and 1, one tone each per speaker): the split reads only the names."""
    folder.mkdir(parents=True)
    tone = 0.3 * np.sin(np.arange(800) / 3.0).astype(np.float32)
    for speaker in speakers:
        for digit in (0, 1):
            sf.write(folder / f"{digit}_{speaker}_0.wav", tone, 8000)
    return folder


def test_fsdd_split_without_training_files_names_test_speakers_and_the_folder(tmp_path: Path) -> None:
    folder = _fsdd_names(tmp_path / "recordings", ["alice", "bob"])
    with pytest.raises(DataError) as info:
        fsdd(str(tmp_path), sample_rate=8000, test_speakers=["alice", "bob"])
    assert str(info.value) == (
        f"fsdd: test_speakers=['alice', 'bob'] leaves 0 training and 4 test recordings in {folder} "
        "(speakers there: alice, bob); every speaker there is held out; leave at least one for training"
    )
    with pytest.raises(DataError, match=r"test_speakers=\['Bob'\] leaves 4 training and 0 test .* by 'Bob'$"):
        fsdd(str(tmp_path), sample_rate=8000, test_speakers=["Bob"])
    # one name written without a list is that speaker (not the letters of a string)
    bundle = fsdd(str(tmp_path), sample_rate=8000, test_speakers="bob")  # type: ignore[arg-type]
    assert (len(bundle.eval_train), len(bundle.eval_test)) == (2, 2)


def test_skip_bad_leaves_bad_clips_out_and_lists_them_in_the_stats(tmp_path: Path) -> None:
    """A bad clip is found when the bundle is built (each file decoded once), never replaced by the next
    clip (of another class), and named in ``stats`` (the runner's metrics.json ``data`` section)."""
    root = tmp_path / "esc"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for i, (category, fold) in enumerate([("dog", 1), ("rain", 1), ("dog", 2), ("rain", 2), ("rain", 2)]):
        name = f"{fold}-{i}.wav"
        sf.write(str(root / "audio" / name), np.sin(np.arange(4000) / (3.0 + i)).astype(np.float32), 8000)
        rows.append([name, fold, ["dog", "rain"].index(category), category])
    full = (root / "audio" / "2-2.wav").read_bytes()
    (root / "audio" / "2-2.wav").write_bytes(full[: len(full) // 2])  # a dog clip cut short
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["filename", "fold", "target", "category"], *rows])
    bundle = audio_folder_csv(str(root), test_folds=[1], sample_rate=8000, clip_seconds=0.25, skip_bad=True)
    assert bundle.stats["num_skipped"] == 1 and bundle.stats["bad_files"] == [str(root / "audio" / "2-2.wav")]
    assert len(bundle.eval_train) == 2 and [bundle.eval_train[i]["label"] for i in range(2)] == [1, 1]
