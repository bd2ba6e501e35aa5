"""The procedural audio-visual set: real mp4 + wav files, class-dependent sound, paired items."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmssl.data.extras import HeldOutPairs, labelled_splits
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.audio.av_clips import TrainingClips
from mmssl.modalities.audio.io import crop_at, read_audio, read_audio_track, read_video_frames
from mmssl.modalities.audio.paired import paired_video_audio, procedural_audio_visual
from mmssl.modalities.audio.procedural import (
    SOUND_CLASSES,
    clip_rng,
    generate_audio_visual_set,
    read_manifest,
    render_scene_frames,
    synthesize_texture,
)
from mmssl.modalities.audio.texture_stats import erb_filterbank
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TINY = dict(train_per_class=2, test_per_class=1, image_size=32, duration_s=0.5, fps=8)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_audio_visual_set(
        **TINY, num_classes=3, seed=0, cache_dir=tmp_path_factory.mktemp("av_cache")
    )


def test_class_conditional_spectra_differ() -> None:
    sr, per_class = 16000, 3
    responses, _ = erb_filterbank(sr, sr, 30)
    feats, labels = [], []
    for k, texture in enumerate(SOUND_CLASSES):
        for i in range(per_class):
            wave = torch.from_numpy(
                synthesize_texture(texture, clip_rng(0, "train", 10 * i + k), 1.0, sr)
            ).double()
            # Fixed RMS 0.1, unless a loud event would exceed 0.99: then the clip is scaled down instead.
            rms, peak = wave.pow(2).mean().sqrt().item(), wave.abs().max().item()
            assert peak <= 0.99 + 1e-6 and (abs(rms - 0.1) < 1e-4 or (rms < 0.1 and abs(peak - 0.99) < 1e-4))
            power = torch.fft.rfft(wave).abs() ** 2
            feats.append(torch.log(responses**2 @ power + 1e-9))  # log energy per ERB band
            labels.append(k)
    x, y = torch.stack(feats), torch.tensor(labels)
    means = torch.stack([x[y == k].mean(0) for k in range(len(SOUND_CLASSES))])
    within = torch.stack(
        [(x[y == k] - means[k]).pow(2).sum(1).mean() for k in range(len(SOUND_CLASSES))]
    ).mean()
    between = torch.cdist(means, means).pow(2)
    off_diagonal = between[~torch.eye(len(means), dtype=torch.bool)]
    assert (
        off_diagonal.min() > 3 * within
    )  # every pair of class spectra is further apart than clips of a class
    # Leave-one-out nearest class mean on the spectra alone recognises most clips.
    correct = 0
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        loo = torch.stack([x[keep & (y == k)].mean(0) for k in range(len(SOUND_CLASSES))])
        correct += int((loo - x[i]).pow(2).sum(1).argmin() == y[i])
    assert correct / len(x) >= 0.9


def test_files_are_real_mp4_and_wav(tiny_set: Path) -> None:
    rows = read_manifest(tiny_set)
    assert len(rows) == 3 * 2 + 3 * 1 and [int(r["label"]) for r in rows[:3]] == [0, 1, 2]
    row = rows[4]  # train clip 4: label 1
    wav, sr = read_audio(tiny_set / row["audio"])
    assert sr == 16000 and wav.shape == (1, 8000)
    # The mp4's AAC track carries the same sound (aligned; lossy, so correlation, not equality).
    track, sr_track = read_audio_track(tiny_set / row["video"])
    assert sr_track == 16000 and track.shape[1] >= 8000
    assert np.corrcoef(wav[0].numpy(), track[0, :8000].numpy())[0, 1] > 0.95
    frames, times = read_video_frames(tiny_set / row["video"], 4)
    assert frames.shape == (4, 3, 32, 32) and torch.allclose(
        times, torch.tensor([0.0, 0.125, 0.25, 0.375], dtype=torch.float64)
    )
    # Decoded frames match the rendering (H.264 at CRF 18 on 32-px frames: small errors).
    rng = clip_rng(0, "train", 4)
    synthesize_texture(SOUND_CLASSES[1], rng, 0.5, 16000)  # same draw order as the generator
    rendered = torch.from_numpy(render_scene_frames(1, rng, 32, 4)).permute(0, 3, 1, 2).float()
    assert (frames.float() - rendered).abs().mean() < 8.0


def test_cache_is_reused_and_keyed_by_parameters(tiny_set: Path) -> None:
    stamp = (tiny_set / "clips.csv").stat().st_mtime_ns
    again = generate_audio_visual_set(**TINY, num_classes=3, seed=0, cache_dir=tiny_set.parent)
    assert again == tiny_set and (tiny_set / "clips.csv").stat().st_mtime_ns == stamp
    assert not [p for p in tiny_set.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    other = {**TINY, "duration_s": 0.25}
    assert generate_audio_visual_set(**other, num_classes=3, seed=0, cache_dir=tiny_set.parent) != tiny_set


@pytest.mark.parametrize("damage", ["truncated_wav", "altered_mp4"])
def test_damaged_set_is_named_and_generated_again(tmp_path: Path, caplog, damage: str) -> None:
    tiny = dict(TINY, train_per_class=1, test_per_class=1, duration_s=0.25)
    folder = generate_audio_visual_set(**tiny, num_classes=2, seed=0, cache_dir=tmp_path)
    victim = folder / ("train/0001.wav" if damage == "truncated_wav" else "test/0000.mp4")
    original = victim.read_bytes()
    if damage == "truncated_wav":
        victim.write_bytes(original[: len(original) // 2])
    else:  # same size, one byte in the middle
        victim.write_bytes(original[:500] + bytes([original[500] ^ 0xFF]) + original[501:])
    with caplog.at_level(logging.WARNING):
        assert generate_audio_visual_set(**tiny, num_classes=2, seed=0, cache_dir=tmp_path) == folder
    assert (
        f"ignoring damaged procedural audio-visual set {folder}" in caplog.text and str(victim) in caplog.text
    )
    assert victim.read_bytes() == original and [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_bundle_items_follow_the_contract(tiny_set: Path) -> None:
    bundle = procedural_audio_visual(
        **TINY, num_scenes=3, num_frames=4, clip_seconds=0.25, cache_dir=str(tiny_set.parent)
    )
    assert (len(bundle.pretrain), len(bundle.eval_train), len(bundle.eval_test), bundle.num_classes) == (
        6,
        6,
        3,
        3,
    )
    item = bundle.pretrain[2]
    assert set(item) == {"image", "audio", "label", "index"}
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["audio"].shape == (4000,) and item["label"] == 2 and item["index"] == 2
    # Held-out pairs: the middle frame and the audio window centred on its time.
    pairs = bundle.extra(HeldOutPairs, needed_by="this test").dataset
    clips = pairs.base
    pair = pairs[1]
    frames, times, audio, label = clips[1]
    torch.testing.assert_close(pair["audio"], crop_at(audio, 4000, round(float(times[2]) * 16000)))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(pair["image"], (frames[2].float() / 255 - mean) / std)
    for it in (item, pair):  # items cross process boundaries (DataLoader workers)
        assert sorted(pickle.loads(pickle.dumps(it))) == sorted(it)
    visual = bundle.eval_test[1]
    torch.testing.assert_close(visual["input"], pair["image"])
    audio_eval = labelled_splits(bundle.extras, "audio_eval")
    assert audio_eval.num_classes == 3 and audio_eval.test[1]["input"].shape == (4000,)
    by_audio = procedural_audio_visual(
        **TINY, num_scenes=3, clip_seconds=0.25, eval_modality="audio", cache_dir=str(tiny_set.parent)
    )
    assert by_audio.eval_train[0]["input"].shape == (4000,)
    with pytest.raises(DataError, match="eval_modality"):
        procedural_audio_visual(**TINY, num_scenes=3, eval_modality="text", cache_dir=str(tiny_set.parent))


def test_paired_folder_with_classes_and_sidecar_audio(tiny_set: Path, tmp_path: Path) -> None:
    rows = read_manifest(tiny_set)[:6]
    for row in rows:
        folder = tmp_path / "videos" / row["class_name"].replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_set / row["video"], folder / Path(row["video"]).name)
    sidecar = tmp_path / "videos" / "circle_rain" / "0000.wav"
    shutil.copy(tiny_set / rows[0]["audio"], sidecar)
    bundle = paired_video_audio(
        str(tmp_path / "videos"), image_size=32, num_frames=2, clip_seconds=0.5, test_every=2
    )
    assert bundle.num_classes == 3 and (len(bundle.eval_train), len(bundle.eval_test)) == (3, 3)
    clips = bundle.extra(TrainingClips, needed_by="this test").clips
    assert (
        clips.entries[0][1] == sidecar and clips.entries[1][1] is None
    )  # the other videos use their AAC track
    torch.testing.assert_close(clips.clip_audio(0), read_audio(sidecar)[0][0])
    assert isinstance(clips.cache_key, str) and len(clips.cache_key) == 16


def test_real_videos_silent_track_and_missing_audio_are_named(tmp_path: Path) -> None:
    clips = DATA / "video" / "short_clips"
    if not clips.exists():
        pytest.skip(f"real sample data not found: {clips}")
    folder = tmp_path / "real" / "squirrel"
    folder.mkdir(parents=True)
    for name in ("squirrel.mp4", "squirrel_no_audio.mp4"):
        (folder / name).symlink_to((clips / name).resolve())
    with pytest.raises(CorruptFileError, match="squirrel.mp4.*silent"):
        paired_video_audio(str(tmp_path / "real"), test_every=2, num_frames=1, image_size=16)
    with pytest.raises(DataError, match="no audio stream in .*squirrel_no_audio.mp4"):
        paired_video_audio(
            str(tmp_path / "real"), test_every=2, num_frames=1, image_size=16, allow_silent=True
        )
