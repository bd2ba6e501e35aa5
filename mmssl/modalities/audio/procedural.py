"""A built-in audio-visual set: a scene class drives both the picture and an ambient sound texture.

Scene ``k`` shows the procedural shape / texture ``SHAPE_CLASSES[k]`` of the image renderer
(:func:`mmssl.procedural.shapes.render_shape_image`: random colours, so colour says nothing about
the class), drifting slowly across the frame, and sounds like the ambient texture ``SOUND_CLASSES[k]``:

- a noise bed whose spectral envelope is a Gaussian bump in log-frequency (centre, width in octaves)
  over a weak broadband floor,
- slow or fast amplitude modulation of that bed (rate, depth),
- an optional hum (a harmonic series on ``hum_hz``),
- optional impulsive events (Poisson or near-regular onsets; decaying noise bursts or tone pips
  at ``event_hz``).

Every parameter is jittered per clip (log-normal, e.g. the centre by about +-10 %), and the mix is
normalised to a fixed RMS, so classes overlap in level but differ in spectral envelope and temporal
structure: what sound-texture statistics (:mod:`mmssl.modalities.audio.texture_stats`) measure.

:func:`generate_audio_visual_set` writes each clip as a real mp4 (H.264 or MPEG-4 Part 2 video +
AAC audio, via PyAV) and a 16-bit wav (the lossless audio used for training), plus ``clips.csv``,
into one folder per parameter set under the cache dir. The folder is built under a temporary
name and renamed when complete, so a reader never sees a half-written set; ``checksums.sha256`` lists
the SHA-256 of every file, checked before the set is used (once per process): a damaged set (a file cut
short, altered or missing) is logged, naming the file, and generated again.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from mmssl.cache import cache_folder, verify_checksums, write_checksums
from mmssl.errors import DataError
from mmssl.procedural.shapes import SHAPE_CLASSES, render_shape_image

log = logging.getLogger(__name__)

# Bump when the synthesis or the file layout changes, so stale caches are not reused.
AV_VERSION = 1
_SPLIT_CODES = {"train": 0, "test": 1}
MANIFEST = "clips.csv"
TARGET_RMS = 0.1


@dataclass(frozen=True)
class SoundTexture:
    """Class-level parameters of one ambient texture (see the module docstring)."""

    name: str
    centre_hz: float  # centre of the noise bed's spectral bump
    width_oct: float  # its standard deviation in octaves
    bed_level: float  # noise bed RMS relative to the other components
    am_hz: float  # amplitude-modulation rate of the bed
    am_depth: float  # 0 = steady, 1 = fully modulated
    hum_hz: float = 0.0  # fundamental of the hum (0: none)
    hum_level: float = 0.0
    event_rate: float = 0.0  # events per second (0: none)
    event_hz: float = 1000.0  # centre frequency of an event
    event_decay_s: float = 0.01  # exponential decay time constant of an event
    event_tonal: bool = False  # tone pips (True) or noise bursts (False)
    event_regular: bool = False  # near-regular onsets (a clock) instead of Poisson ones
    event_level: float = 1.0


SOUND_CLASSES: tuple[SoundTexture, ...] = (
    SoundTexture(
        "rain", 4000, 1.2, 1.0, 0.5, 0.1, event_rate=40, event_hz=5000, event_decay_s=0.004, event_level=0.8
    ),
    SoundTexture("wind", 300, 0.8, 1.0, 0.6, 0.8),
    SoundTexture("engine", 400, 0.6, 0.6, 24.0, 0.6, hum_hz=55, hum_level=0.8),
    SoundTexture(
        "crowd", 900, 0.7, 1.0, 4.0, 0.5, event_rate=2, event_hz=1200, event_decay_s=0.08, event_level=0.6
    ),
    SoundTexture(
        "stream", 2200, 1.0, 1.0, 9.0, 0.3, event_rate=12, event_hz=3000, event_decay_s=0.02, event_level=0.5
    ),
    SoundTexture("fan", 1500, 1.8, 1.0, 0.2, 0.05, hum_hz=120, hum_level=0.5),
    SoundTexture(
        "clock",
        3000,
        0.7,
        0.15,
        0.3,
        0.0,
        event_rate=2,
        event_hz=2500,
        event_decay_s=0.01,
        event_regular=True,
        event_level=1.5,
    ),
    SoundTexture(
        "birds",
        5000,
        0.5,
        0.3,
        0.4,
        0.3,
        event_rate=4,
        event_hz=3500,
        event_decay_s=0.06,
        event_tonal=True,
        event_level=1.5,
    ),
    SoundTexture(
        "traffic",
        180,
        1.0,
        1.0,
        0.25,
        0.7,
        hum_hz=80,
        hum_level=0.3,
        event_rate=0.7,
        event_hz=400,
        event_decay_s=0.3,
        event_level=0.8,
    ),
    SoundTexture(
        "keyboard",
        2500,
        0.8,
        0.2,
        0.5,
        0.2,
        event_rate=9,
        event_hz=2000,
        event_decay_s=0.006,
        event_level=1.5,
    ),
)


def class_names(num_classes: int) -> list[str]:
    """``"<shape>/<sound>"`` for each scene class."""
    return [f"{SHAPE_CLASSES[k]}/{SOUND_CLASSES[k].name}" for k in range(num_classes)]


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one clip: a function of (version, seed, split, index) only."""
    return np.random.default_rng(
        np.random.SeedSequence([AV_VERSION, 7, int(seed), _SPLIT_CODES[split], int(index)])
    )


# ----------------------------------------------------------------------------------------- sound


def _rms_normalise(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2)))
    return x / rms if rms > 0 else x


def _shaped_noise(n: int, sr: int, centre: float, width_oct: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a Gaussian-in-log-frequency spectral bump (plus a 3 % floor), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    octaves = np.log2(np.maximum(freqs, 1.0) / centre)
    gain = np.exp(-0.5 * (octaves / width_oct) ** 2) + 0.03
    gain[0] = 0.0
    return _rms_normalise(np.fft.irfft(spec * gain, n))


def synthesize_texture(
    texture: SoundTexture, rng: np.random.Generator, duration_s: float, sample_rate: int
) -> np.ndarray:
    """One clip of ``texture`` with per-clip jitter; float32 ``[S]`` at RMS ``TARGET_RMS``."""
    sr, n = sample_rate, int(round(duration_s * sample_rate))
    t = np.arange(n) / sr

    def jitter(value: float, octaves: float) -> float:
        return float(value * 2 ** rng.normal(0.0, octaves))

    nyquist = sr / 2
    centre = min(jitter(texture.centre_hz, 0.15), 0.8 * nyquist)
    bed = _shaped_noise(n, sr, centre, jitter(texture.width_oct, 0.1), rng)
    depth = float(np.clip(texture.am_depth + rng.normal(0, 0.05), 0, 1))
    am = 1 + depth * np.sin(2 * np.pi * jitter(texture.am_hz, 0.15) * t + rng.uniform(0, 2 * np.pi))
    mix = jitter(texture.bed_level, 0.1) * bed * am / (1 + depth)
    if texture.hum_hz > 0:
        f0 = jitter(texture.hum_hz, 0.05)
        hum = sum(
            np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) / h
            for h in range(1, 6)
            if h * f0 < 0.9 * nyquist
        )
        mix = mix + jitter(texture.hum_level, 0.1) * _rms_normalise(np.asarray(hum))
    if texture.event_rate > 0:
        mix = mix + jitter(texture.event_level, 0.1) * _events(texture, rng, n, sr)
    mix = _rms_normalise(mix) * TARGET_RMS
    peak = float(np.abs(mix).max())
    if peak > 0.99:  # rare: a loud event; scale down rather than clip
        mix *= 0.99 / peak
    return mix.astype(np.float32)


def _events(texture: SoundTexture, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A unit-RMS train of decaying bursts or pips at Poisson (or near-regular) onsets."""
    rate = float(texture.event_rate * 2 ** rng.normal(0, 0.2))
    duration = n / sr
    if texture.event_regular:
        period = 1.0 / rate
        onsets = np.arange(rng.uniform(0, period), duration, period) + rng.normal(0, 0.005, size=1)
    else:
        onsets = np.sort(rng.uniform(0, duration, size=rng.poisson(rate * duration)))
    out = np.zeros(n)
    decay = float(texture.event_decay_s * 2 ** rng.normal(0, 0.15))
    length = min(n, int(5 * decay * sr) + 1)
    tt = np.arange(length) / sr
    envelope = np.exp(-tt / decay)
    for onset in onsets:
        start = int(onset * sr)
        if not 0 <= start < n:
            continue
        freq = float(texture.event_hz * 2 ** rng.normal(0, 0.15))
        if texture.event_tonal:  # a short chirp-like pip: frequency glides up by a few percent
            burst = np.sin(2 * np.pi * freq * tt * (1 + 0.5 * tt / max(tt[-1], 1e-9) * 0.1))
        else:
            burst = _shaped_noise(length, sr, freq, 0.4, rng) if length > 8 else rng.standard_normal(length)
        seg = (envelope * burst * rng.uniform(0.5, 1.0))[: n - start]
        out[start : start + len(seg)] += seg
    if not out.any():  # no onset drawn: keep the component silent rather than dividing by zero
        return out
    return _rms_normalise(out)


# ---------------------------------------------------------------------------------------- picture


def render_scene_frames(label: int, rng: np.random.Generator, image_size: int, num_frames: int) -> np.ndarray:
    """``num_frames`` uint8 frames ``[T, H, W, 3]``: one rendered scene seen through a window drifting
    linearly across it (a slow pan), so frames of a clip differ but show the same scene."""
    margin = max(2, image_size // 4)
    scene = render_shape_image(label, rng, image_size + margin).transpose(1, 2, 0)  # [H+m, W+m, 3]
    start, end = rng.uniform(0, margin, size=2), rng.uniform(0, margin, size=2)
    frames = []
    for k in range(num_frames):
        a = k / max(num_frames - 1, 1)
        y, x = (int(round(v)) for v in (1 - a) * start + a * end)
        frames.append(scene[y : y + image_size, x : x + image_size])
    return np.stack(frames)


# ------------------------------------------------------------------------------------------ files


def _video_codec() -> str:
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise DataError("PyAV has neither libx264 nor mpeg4 encoders: cannot write the procedural mp4 files")


def write_mp4(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None, sample_rate: int) -> None:
    """Write ``frames`` (uint8 ``[T, H, W, 3]``, even sides) and optional mono ``audio`` as an mp4.

    Video: H.264 (libx264, CRF 18) or MPEG-4 Part 2, yuv420p. Audio: AAC-LC, mono, fed in frames of
    the encoder's frame size (1024 samples).
    """
    codec = _video_codec()
    with av.open(str(path), "w", format="mp4") as out:
        vstream = out.add_stream(codec, rate=fps)
        vstream.width, vstream.height = int(frames.shape[2]), int(frames.shape[1])
        vstream.pix_fmt = "yuv420p"
        if codec == "libx264":
            vstream.options = {"crf": "18", "preset": "veryfast"}
        astream = None
        if audio is not None:
            # FFmpeg's "fast" AAC coder: about 2x faster than the default two-loop search; ample here.
            astream = out.add_stream("aac", rate=sample_rate, layout="mono", options={"aac_coder": "fast"})
        for frame in frames:
            for packet in vstream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                out.mux(packet)
        for packet in vstream.encode():
            out.mux(packet)
        if astream is not None and audio is not None:
            chunk = astream.codec_context.frame_size or 1024
            for start in range(0, len(audio), chunk):
                piece = np.ascontiguousarray(audio[start : start + chunk], dtype=np.float32)[None]
                aframe = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = sample_rate, start
                for packet in astream.encode(aframe):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)


#: the clips' folder under the cache root
AV_CACHE_NAME = "procedural_audio_visual"


def default_av_cache_dir() -> Path:
    """``$MMSSL_CACHE/procedural_audio_visual`` (next to the image renderer's cache)."""
    return cache_folder(AV_CACHE_NAME)


def set_key(
    seed: int,
    train_per_class: int,
    test_per_class: int,
    num_classes: int,
    image_size: int,
    duration_s: float,
    sample_rate: int,
    fps: int,
) -> str:
    """The cache folder name: every parameter that changes the files."""
    return (
        f"v{AV_VERSION}_seed{seed}_n{train_per_class}x{test_per_class}_k{num_classes}_px{image_size}"
        f"_{duration_s:g}s_sr{sample_rate}_fps{fps}"
    )


def generate_audio_visual_set(
    train_per_class: int = 24,
    test_per_class: int = 8,
    num_classes: int = 10,
    image_size: int = 64,
    duration_s: float = 2.0,
    sample_rate: int = 16000,
    fps: int = 8,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Path:
    """Generate (once) and return the folder holding ``clips.csv`` and ``{split}/{i:04d}.{mp4,wav}``.

    ``clips.csv`` columns: ``split, index, label, class_name, video, audio`` (paths relative to the
    folder). Clip ``i`` of a split has label ``i % num_classes`` and depends only on
    ``(seed, split, i)``.
    """
    if not 2 <= num_classes <= len(SOUND_CLASSES):
        raise DataError(f"num_classes must be in [2, {len(SOUND_CLASSES)}], got {num_classes}")
    if image_size < 8 or image_size % 2:
        raise DataError(f"image_size must be an even number >= 8 (yuv420p video), got {image_size}")
    if train_per_class < 1 or test_per_class < 1 or duration_s <= 0 or fps < 1:
        raise DataError("need train_per_class, test_per_class, fps >= 1 and duration_s > 0")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_av_cache_dir()
    key = set_key(
        seed, train_per_class, test_per_class, num_classes, image_size, duration_s, sample_rate, fps
    )
    final = root / key
    if (final / MANIFEST).is_file():
        problem = _damage(final)
        if problem is None:
            return final
        log.warning(
            "ignoring damaged procedural audio-visual set %s (%s); generating it again", final, problem
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
    start = time.perf_counter()
    try:
        rows = []
        names = class_names(num_classes)
        num_frames = max(1, int(round(duration_s * fps)))
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            (tmp / split).mkdir()
            for i in range(per_class * num_classes):
                label = i % num_classes
                rng = clip_rng(seed, split, i)
                audio = synthesize_texture(SOUND_CLASSES[label], rng, duration_s, sample_rate)
                frames = render_scene_frames(label, rng, image_size, num_frames)
                video_rel, audio_rel = f"{split}/{i:04d}.mp4", f"{split}/{i:04d}.wav"
                write_mp4(tmp / video_rel, frames, fps, audio, sample_rate)
                sf.write(str(tmp / audio_rel), audio, sample_rate, subtype="PCM_16")
                rows.append([split, i, label, names[label], video_rel, audio_rel])
        with (tmp / MANIFEST).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "index", "label", "class_name", "video", "audio"])
            writer.writerows(rows)
        write_checksums(tmp)
        if final.exists() and _damage(final) is not None:  # damaged: moved aside, then removed
            stale = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.stale-"))
            os.rename(final, stale / "set")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same set first: use theirs
            if _damage(final) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "generated %d audio-visual clips in %.1fs under %s", len(rows), time.perf_counter() - start, final
    )
    return final


def _damage(folder: Path) -> str | None:
    """What is wrong with a generated set (None: complete and intact)."""
    if not (folder / MANIFEST).is_file():
        return f"no {folder / MANIFEST}: incomplete"
    return verify_checksums(folder)


def read_manifest(folder: str | Path) -> list[dict[str, str]]:
    """Rows of ``clips.csv`` in ``folder`` (DataError naming it when missing)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(f"procedural audio-visual manifest not found: {path}")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


__all__ = [
    "SOUND_CLASSES",
    "SoundTexture",
    "class_names",
    "generate_audio_visual_set",
    "read_manifest",
    "render_scene_frames",
    "synthesize_texture",
    "write_mp4",
]
