"""Reading audio: files through soundfile, the audio track of a video through PyAV; mono, resampling, crops.

Every reader returns ``(wave, sample_rate)`` with ``wave`` a float32 tensor ``[C, S]`` in [-1, 1]
(``[1, S]`` when ``mono=True``: the mean over channels). Resampling uses
``torchaudio.functional.resample`` (windowed-sinc, band-limited). A file that cannot be decoded,
holds no samples, holds non-finite samples or is digitally silent (every sample exactly zero: a
broken recording, and a clip that breaks per-clip RMS normalisation) raises
:class:`~mmssl.errors.CorruptFileError` naming it. A missing file, or a video without an audio
stream, raises :class:`~mmssl.errors.DataError` naming it.

Crops work on the last axis of ``[..., S]`` and zero-pad clips shorter than the crop, so clips of
any length stack into one batch.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from mmssl.errors import CorruptFileError, DataError

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def _finish(
    wave: Tensor, sr: int, path: Path, sample_rate: int | None, mono: bool, allow_silent: bool
) -> tuple[Tensor, int]:
    """Shared checks and conversions for every reader: ``wave`` is ``[C, S]`` at rate ``sr``."""
    if wave.numel() == 0 or wave.shape[-1] == 0:
        raise CorruptFileError(path, "no audio samples")
    if not torch.isfinite(wave).all():
        raise CorruptFileError(path, "non-finite audio samples")
    if not allow_silent and not wave.abs().amax() > 0:
        raise CorruptFileError(path, f"silent: all {wave.shape[-1]} samples are zero")
    if mono and wave.shape[0] > 1:
        wave = wave.mean(dim=0, keepdim=True)
    if sample_rate is not None and int(sample_rate) != int(sr):
        wave = resample(wave, sr, int(sample_rate))
        sr = int(sample_rate)
    return wave.contiguous(), int(sr)


def resample(wave: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited resampling of ``[..., S]`` with ``torchaudio.functional.resample``."""
    if int(orig_sr) == int(new_sr):
        return wave
    return AF.resample(wave, int(orig_sr), int(new_sr))


def read_audio(
    path: str | Path, sample_rate: int | None = None, mono: bool = True, *, allow_silent: bool = False
) -> tuple[Tensor, int]:
    """Decode a wav / flac / ogg file with soundfile -> ``(float32 [C or 1, S], rate)``.

    ``sample_rate``: resample to this rate (None keeps the file's). ``mono``: average the channels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    wave = torch.from_numpy(np.ascontiguousarray(data.T))
    return _finish(wave, int(sr), path, sample_rate, mono, allow_silent)


def read_audio_track(
    video_path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    *,
    allow_silent: bool = False,
    stream_index: int = 0,
) -> tuple[Tensor, int]:
    """Decode the audio track of a video file (e.g. AAC in mp4) with PyAV -> ``(float32 [C or 1, S], rate)``.

    Whatever the codec's sample format (planar or packed, integer or float), frames are converted
    to planar float32 by FFmpeg's resampler at the stream's own rate and layout; the rate change,
    if any, is then done by :func:`resample` like for every other reader. AAC adds encoder priming
    and padding, so the track can be a few hundred samples longer than the audio that was encoded.
    """
    path = Path(video_path)
    if not path.is_file():
        raise DataError(f"video file not found: {path}")
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if len(container.streams.audio) <= stream_index:
                raise DataError(f"no audio stream in {path} (it has {len(container.streams.audio)})")
            stream = container.streams.audio[stream_index]
            to_float = av.AudioResampler(format="fltp")
            sr = stream.codec_context.sample_rate or stream.rate
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    chunks.append(out.to_ndarray())  # [C, n]
            for out in to_float.resample(None):  # flush
                chunks.append(out.to_ndarray())
    except (av.FFmpegError, OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    if not chunks:
        raise CorruptFileError(path, "the audio stream decoded to no samples")
    wave = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
    return _finish(wave, int(sr), path, sample_rate, mono, allow_silent)


def load_audio(
    path: str | Path, sample_rate: int | None = None, mono: bool = True, *, allow_silent: bool = False
) -> tuple[Tensor, int]:
    """:func:`read_audio` for audio files, :func:`read_audio_track` for videos (chosen by extension)."""
    if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        return read_audio_track(path, sample_rate, mono, allow_silent=allow_silent)
    return read_audio(path, sample_rate, mono, allow_silent=allow_silent)


def _pad_to(wave: Tensor, num_samples: int, offset: int) -> Tensor:
    """Zero-pad ``[..., S]`` to ``num_samples`` with the clip starting at ``offset``."""
    out = wave.new_zeros(*wave.shape[:-1], num_samples)
    out[..., offset : offset + wave.shape[-1]] = wave
    return out


def center_crop(wave: Tensor, num_samples: int) -> Tensor:
    """The central ``num_samples`` of ``[..., S]``; a shorter clip is zero-padded on both sides (centred)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    length = wave.shape[-1]
    if length >= num_samples:
        start = (length - num_samples) // 2
        return wave[..., start : start + num_samples]
    return _pad_to(wave, num_samples, (num_samples - length) // 2)


def random_crop(wave: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly placed window of ``num_samples`` from ``[..., S]``.

    A shorter clip is placed at a uniformly random offset inside a zero window of ``num_samples``.
    Randomness comes from ``generator`` (default: torch's global RNG, seeded per worker).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    length = wave.shape[-1]
    slack = abs(length - num_samples)
    offset = int(torch.randint(slack + 1, (1,), generator=generator)) if slack else 0
    if length >= num_samples:
        return wave[..., offset : offset + num_samples]
    return _pad_to(wave, num_samples, offset)


def crop_at(wave: Tensor, num_samples: int, centre: int) -> Tensor:
    """A window of ``num_samples`` centred at sample ``centre`` (shifted to stay inside the clip)."""
    length = wave.shape[-1]
    if length <= num_samples:
        return center_crop(wave, num_samples)
    start = min(max(int(centre) - num_samples // 2, 0), length - num_samples)
    return wave[..., start : start + num_samples]


def read_video_frames(path: str | Path, num_frames: int, size: int | None = None) -> tuple[Tensor, Tensor]:
    """``num_frames`` frames evenly spaced in time from a video (PyAV) -> ``(uint8 [T, 3, H, W], times [T])``.

    Frame ``k`` is the decoded frame nearest to ``(k + 0.5) / num_frames * duration`` (its time in
    seconds is ``times[k]``): the centres of ``num_frames`` equal segments. A frame repeats when the
    video has fewer frames than asked. ``size``: scale the shorter side to ``size`` while decoding
    (FFmpeg's scaler, so a 720p frame is never kept at full size) and keep the centre
    ``size x size``. Undecodable: CorruptFileError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file not found: {path}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _video_duration(container, stream)
            targets = [(k + 0.5) / num_frames * duration for k in range(num_frames)]
            width, height = stream.codec_context.width, stream.codec_context.height
            if size is not None:
                scale = size / min(width, height)
                width, height = max(size, round(width * scale)), max(size, round(height * scale))
            rate = float(stream.average_rate or 25)
            previous: tuple[av.VideoFrame, float] | None = None

            def keep(frame: av.VideoFrame, t: float) -> None:
                frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                times.append(t)

            for index, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / rate
                # Each target takes the decoded frame nearest to it: the previous one or this one.
                while len(frames) < num_frames and t >= targets[len(frames)]:
                    target = targets[len(frames)]
                    if previous is not None and target - previous[1] <= t - target:
                        keep(*previous)
                    else:
                        keep(frame, t)
                if len(frames) == num_frames:
                    break
                previous = (frame, t)
            while previous is not None and len(frames) < num_frames:  # targets after the last frame
                keep(*previous)
    except (av.FFmpegError, OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    if not frames:
        raise CorruptFileError(path, "no decodable video frames")
    array = np.stack(frames).transpose(0, 3, 1, 2)  # [T, 3, H, W]
    if size is not None:
        top, left = (array.shape[2] - size) // 2, (array.shape[3] - size) // 2
        array = array[:, :, top : top + size, left : left + size]
    return torch.from_numpy(np.ascontiguousarray(array)), torch.tensor(times, dtype=torch.float64)


def _video_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Seconds, from the stream header, else the container's; 0 when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1e6  # container durations are in microseconds (av.time_base)
    return 0.0
