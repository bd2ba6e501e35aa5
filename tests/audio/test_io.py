"""Audio I/O on the real samples: mixed rates / channels, Ogg, the mp4's AAC track, crops, bad files."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import av
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
    lazy = AudioClips([(bad, 1), (good, 0)], 8000, skip_bad=True)  # checked once here, not kept
    assert lazy._waves is None and lazy.bad_files == [bad] and lazy.num_skipped == 1
    assert len(lazy) == 1 and lazy.targets == [0]  # left out of the index: no other clip stands in
    wave, label = lazy[0]
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


# ------------------------------------------------------------------------------ cut short / 5.1 down-mix


def test_wav_cut_in_half_is_named_not_read_as_a_shorter_clip(tmp_path: Path) -> None:
    full = tmp_path / "full.wav"
    sf.write(str(full), (0.5 * np.sin(np.arange(8000) / 5.0)).astype(np.float32), 8000, subtype="PCM_16")
    half = tmp_path / "half.wav"
    raw = full.read_bytes()
    half.write_bytes(raw[: len(raw) // 2])
    assert sf.info(str(half)).frames == 3989  # soundfile takes the length from the bytes present
    with pytest.raises(CorruptFileError) as info:
        read_audio(half)
    assert info.value.path == half
    assert str(info.value) == (
        f"corrupt or unreadable file: {half} (truncated: the WAV header declares 8000 frames (1.000 s), "
        "the file holds 3989 (0.499 s))"
    )
    assert read_audio(full)[0].shape == (1, 8000)
    with pytest.raises(CorruptFileError, match="half.wav"):  # skip_bad sees it as any other bad file
        AudioClips([(half, 0)], 8000, preload=True)


# L R C LFE Ls Rs: constant levels, the LFE loudest, so that a plain mean would be far off.
LEVELS = np.array([0.1, 0.2, 0.3, 0.9, 0.05, 0.15], dtype=np.float32)
BS775_MONO = 0.5 * (0.1 + 0.2) + math.sqrt(0.5) * 0.3 + 0.5 * math.sqrt(0.5) * (0.05 + 0.15)  # 0.4328


def _extensible_wav(path: Path, frames: np.ndarray, rate: int, mask: int) -> None:
    """A float32 WAVE_FORMAT_EXTENSIBLE file with the speaker ``mask`` (soundfile cannot set one)."""
    channels = frames.shape[1]
    guid_float = struct.pack("<IHH8s", 3, 0, 0x10, b"\x80\x00\x00\xaa\x00\x38\x9b\x71")
    fmt = struct.pack(
        "<HHIIHHHHI", 0xFFFE, channels, rate, rate * 4 * channels, 4 * channels, 32, 22, 32, mask
    )
    data = frames.astype("<f4").tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt + guid_float)) + fmt + guid_float
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_six_channel_wav_is_down_mixed_as_5_1_by_itu_bs775(tmp_path: Path) -> None:
    path = tmp_path / "surround.wav"
    sf.write(str(path), np.tile(LEVELS, (400, 1)), 8000, subtype="FLOAT")  # no mask: the default order
    mono, _ = read_audio(path)
    assert mono.shape == (1, 400)
    torch.testing.assert_close(mono, torch.full((1, 400), BS775_MONO), atol=1e-6, rtol=0)
    assert read_audio(path, mono=False)[0].shape == (6, 400)
    lfe_only = tmp_path / "lfe.wav"
    sf.write(str(lfe_only), np.tile(LEVELS * np.eye(6, dtype=np.float32)[3], (400, 1)), 8000, subtype="FLOAT")
    assert read_audio(lfe_only)[0].abs().max() == 0  # the LFE channel does not leak into the mix
    # WAVE_FORMAT_EXTENSIBLE: a 5.1 speaker mask mixes the same; six channels at other positions: the mean
    _extensible_wav(tmp_path / "masked_5_1.wav", np.tile(LEVELS, (400, 1)), 8000, mask=0x60F)
    torch.testing.assert_close(read_audio(tmp_path / "masked_5_1.wav")[0][0, 0], torch.tensor(BS775_MONO))
    _extensible_wav(tmp_path / "six_mics.wav", np.tile(LEVELS, (400, 1)), 8000, mask=0x0)
    torch.testing.assert_close(read_audio(tmp_path / "six_mics.wav")[0][0, 0], torch.tensor(LEVELS.mean()))
    # other channel counts keep the plain mean
    sf.write(str(tmp_path / "stereo.wav"), np.tile(LEVELS[:2], (400, 1)), 8000, subtype="FLOAT")
    torch.testing.assert_close(read_audio(tmp_path / "stereo.wav")[0][0, 0], torch.tensor(0.15))


def test_5_1_audio_track_drops_the_lfe(tmp_path: Path) -> None:
    path = tmp_path / "lfe.mp4"
    t = np.arange(8000) / 8000
    planes = np.zeros((6, 8000), dtype=np.float32)
    planes[3] = 0.5 * np.sin(2 * np.pi * 60 * t)  # a 60 Hz rumble on the LFE only
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000, layout="5.1")
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="5.1")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    stereo_or_more, _ = read_audio_track(path, mono=False, allow_silent=True)
    assert stereo_or_more.shape[0] == 6 and stereo_or_more[3].abs().max() > 0.1
    mono, _ = read_audio_track(path, allow_silent=True)
    assert mono.abs().max() < 1e-3
