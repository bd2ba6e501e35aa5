"""Audio I/O on the real samples: mixed rates / channels, Ogg, the mp4's AAC track, crops, bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.audio.clips import AudioClips
from mmssl.modalities.audio.io import (
    center_crop,
    crop_at,
    load_audio,
    random_crop,
    read_audio,
    read_audio_track,
    read_video_frames,
    resample,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FREESOUND = DATA / "audio" / "ibm_max_freesound_samples"
CLIPS = DATA / "video" / "short_clips"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sample data not found: {path}")
    return path


@pytest.mark.parametrize(
    ("name", "rate", "channels", "seconds"),
    [("typing.wav", 48000, 2, 11.9), ("gunshots.wav", 44100, 1, 10.5), ("rain.wav", 44100, 2, 12.3)],
)
def test_real_clips_rates_channels_and_resampling(
    name: str, rate: int, channels: int, seconds: float
) -> None:
    path = _need(FREESOUND / name)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (rate, channels)  # the README's description
    raw, sr = read_audio(path, mono=False)
    assert sr == rate and raw.shape == (channels, info.frames) and raw.dtype == torch.float32
    assert abs(raw.shape[1] / sr - seconds) < 0.1
    mono, sr16 = read_audio(path, sample_rate=16000)
    assert sr16 == 16000 and mono.shape[0] == 1
    # Resampling keeps the duration: S_new = ceil(S * 16000 / rate).
    assert mono.shape[1] == math.ceil(info.frames * 16000 / rate)
    # Mono is the channel mean (checked at the original rate, where no filter is involved).
    mono_native, _ = read_audio(path)
    torch.testing.assert_close(mono_native[0], raw.mean(dim=0))


def test_ogg_same_sound_at_two_rates() -> None:
    folder = _need(DATA / "audio" / "librosa_data")
    lo, hq = sorted(folder.glob("*.ogg"), key=lambda p: len(p.name))
    a, sr_a = load_audio(lo, 16000)
    b, sr_b = load_audio(hq, 16000)
    assert sr_a == sr_b == 16000 and abs(a.shape[1] - b.shape[1]) <= 2  # 22.05 kHz mono vs 44.1 kHz stereo
    n = min(a.shape[1], b.shape[1])
    corr = np.corrcoef(a[0, :n].numpy(), b[0, :n].numpy())[0, 1]
    assert corr > 0.9  # the same recording


def test_mp4_aac_track_is_read_and_its_silence_is_named() -> None:
    path = _need(CLIPS / "squirrel.mp4")
    wave, sr = read_audio_track(path, mono=False, allow_silent=True)
    # AAC stereo 48 kHz, 10 s (plus encoder padding of under one 1024-sample frame).
    assert sr == 48000 and wave.shape[0] == 2 and abs(wave.shape[1] / sr - 10.0) < 1024 / sr + 1e-9
    resampled, sr16 = read_audio_track(path, 16000, allow_silent=True)
    assert sr16 == 16000 and resampled.shape == (1, math.ceil(wave.shape[1] / 3))
    # This copy's audio track is digital silence: by default that is an error naming the file.
    with pytest.raises(CorruptFileError, match="squirrel.mp4.*silent"):
        read_audio_track(path)


def test_video_without_audio_stream_is_named() -> None:
    path = _need(CLIPS / "squirrel_no_audio.mp4")
    with pytest.raises(DataError, match="no audio stream in .*squirrel_no_audio.mp4"):
        load_audio(path)


def test_read_video_frames_evenly_spaced() -> None:
    path = _need(CLIPS / "squirrel_no_audio.mp4")
    frames, times = read_video_frames(path, 4, size=32)
    assert frames.shape == (4, 3, 32, 32) and frames.dtype == torch.uint8
    # Centres of 4 equal segments of the 10 s clip, to within one frame at 25 fps.
    assert torch.allclose(
        times, torch.tensor([1.25, 3.75, 6.25, 8.75], dtype=torch.float64), atol=0.04 + 1e-9
    )


def test_corrupt_silent_and_empty_files_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio" * 3)
    with pytest.raises(CorruptFileError, match="garbage.wav"):
        read_audio(garbage)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(800, dtype=np.float32), 8000)
    with pytest.raises(CorruptFileError, match="silent.wav.*silent"):
        read_audio(silent)
    assert read_audio(silent, allow_silent=True)[0].abs().max() == 0
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(CorruptFileError, match="empty.wav.*no audio samples"):
        read_audio(empty)
    with pytest.raises(DataError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    with pytest.raises(CorruptFileError, match="broken.mp4"):
        read_audio_track(bad_video)


def test_skip_bad_counts_and_keeps_good_files(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(str(good), np.sin(np.arange(4000) / 5.0).astype(np.float32), 8000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(CorruptFileError, match="bad.wav"):
        AudioClips([(good, 0), (bad, 1)], 8000, preload=True)
    clips = AudioClips([(good, 0), (bad, 1)], 8000, preload=True, skip_bad=True)
    assert len(clips) == 1 and clips.num_skipped == 1 and clips.targets == [0]
    lazy = AudioClips([(bad, 1), (good, 0)], 8000, skip_bad=True)
    wave, label = lazy[0]  # the bad file is skipped on access: the next readable clip
    assert label == 0 and wave.shape == (4000,) and lazy.num_skipped == 1


def test_crops_shapes_padding_and_placement() -> None:
    wave = torch.arange(10.0)[None]  # [1, 10]
    assert center_crop(wave, 4).tolist() == [[3.0, 4.0, 5.0, 6.0]]
    padded = center_crop(wave, 14)
    assert padded.shape == (1, 14) and padded[0, 2:12].tolist() == list(range(10)) and padded.sum() == 45
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        crop = random_crop(wave, 4, generator=g)[0]
        start = int(crop[0])
        assert crop.tolist() == [float(v) for v in range(start, start + 4)]  # a contiguous window
        long = random_crop(wave, 13, generator=g)[0]
        assert long.sum() == 45 and long.shape == (13,)  # the whole clip, zero-padded around it
    assert crop_at(wave, 4, centre=0).tolist() == [[0.0, 1.0, 2.0, 3.0]]  # shifted to stay inside
    assert crop_at(wave, 4, centre=6).tolist() == [[4.0, 5.0, 6.0, 7.0]]


def test_resample_preserves_a_tone() -> None:
    sr, f = 44100, 440.0
    t = torch.arange(sr) / sr
    tone = torch.sin(2 * math.pi * f * t)[None]
    out = resample(tone, sr, 16000)
    spectrum = torch.fft.rfft(out[0]).abs()
    peak_hz = float(spectrum.argmax()) * 16000 / out.shape[1]
    assert abs(peak_hz - f) <= 1.0 and out.shape[1] == 16000
