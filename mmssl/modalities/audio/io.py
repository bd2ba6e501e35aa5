"""Reading audio: files through soundfile, the audio track of a video through PyAV; mono, resampling, crops.

Every reader returns ``(wave, sample_rate)`` with ``wave`` a float32 tensor ``[C, S]`` in [-1, 1]
(``[1, S]`` when ``mono=True``: the down-mix of :func:`downmix_mono`, the ITU-R BS.775 one for 5.1,
the mean over channels otherwise). Resampling uses
``torchaudio.functional.resample`` (windowed-sinc, band-limited). A file that cannot be decoded,
holds no samples, holds non-finite samples or is digitally silent (every sample exactly zero: a
broken recording, and a clip that breaks per-clip RMS normalisation) raises
:class:`~mmssl.errors.CorruptFileError` naming it; so does a WAV cut short (its header declares more
audio data than the file holds: libsndfile reads what is there and reports the shorter length as if
it were the whole file, see :func:`wav_header`). A missing file, or a video without an audio
stream, raises :class:`~mmssl.errors.DataError` naming it.

Crops work on the last axis of ``[..., S]`` and zero-pad clips shorter than the crop, so clips of
any length stack into one batch.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from mmssl.errors import CorruptFileError, DataError

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")

#: the 5.1 layout :func:`downmix_mono` knows: channels L R C LFE Ls Rs, in this order
SURROUND_5_1 = "5.1"
#: WAVE_FORMAT_EXTENSIBLE speaker masks of 5.1: FL FR FC LFE BL BR, and FL FR FC LFE SL SR
_WAV_5_1_MASKS = (0x3F, 0x60F)
#: data-chunk sizes that writers use for "unknown" (a stream written without seeking back)
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_MINUS_3_DB = math.sqrt(0.5)  # BS.775's 0.7071
_FFMPEG_5_1 = (["FL", "FR", "FC", "LFE", "BL", "BR"], ["FL", "FR", "FC", "LFE", "SL", "SR"])


def downmix_mono(wave: Tensor, layout: str | None = None) -> Tensor:
    """``[C, S]`` -> ``[1, S]``: one channel from several.

    ``layout="5.1"`` with six channels in the order L R C LFE Ls Rs (WAVE_FORMAT_EXTENSIBLE's default
    order, FLAC's and FFmpeg's): the ITU-R BS.775 stereo down-mix ``Lo = L + 0.7071 C + 0.7071 Ls``,
    ``Ro = R + 0.7071 C + 0.7071 Rs`` (centre and surrounds at -3 dB, LFE dropped), and mono is the mean
    of ``Lo`` and ``Ro``: ``0.5 (L + R) + 0.7071 C + 0.3536 (Ls + Rs)``. Like BS.775 the matrix is not
    normalised, so a loud 5.1 mix can exceed [-1, 1] (nothing is clipped). Any other channel count or
    layout: the plain mean over channels.
    """
    if wave.shape[0] == 1:
        return wave
    if layout == SURROUND_5_1 and wave.shape[0] == 6:
        left, right, centre, _lfe, left_s, right_s = wave
        lo = left + _MINUS_3_DB * (centre + left_s)
        ro = right + _MINUS_3_DB * (centre + right_s)
        return (0.5 * (lo + ro)).unsqueeze(0)
    return wave.mean(dim=0, keepdim=True)


@dataclass(frozen=True)
class WavHeader:
    """What a RIFF/WAVE header says: ``data_bytes`` declared by the data chunk, ``available`` bytes
    after it in the file, ``block_align`` (bytes per frame) and the WAVE_FORMAT_EXTENSIBLE
    ``channel_mask`` (None for plain formats)."""

    data_bytes: int
    available: int
    block_align: int
    channel_mask: int | None


def wav_header(path: str | Path, data: bytes | None = None) -> WavHeader | None:
    """The data chunk and format of a RIFF/RIFX WAVE file, read from its header; None when the file is not
    one (RF64, another format) or has no data chunk. ``data``: the file's bytes (a shard member), read
    instead of ``path``.

    Why: libsndfile (soundfile) takes the frame count of a WAV whose data chunk runs past the end of
    the file from the bytes present, and reads those without an error, so ``sf.info(...).frames`` and
    the decoded length both describe a file cut in half as a complete, shorter one. Only the header
    still says how much audio was written.
    """
    if data is not None:
        return _wav_header(io.BytesIO(data), len(data))
    path = Path(path)
    with path.open("rb") as f:
        return _wav_header(f, path.stat().st_size)


def _wav_header(f: BinaryIO, size: int) -> WavHeader | None:
    """:func:`wav_header` of an open binary file of ``size`` bytes."""
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "<" if head[:4] == b"RIFF" else ">"
    pos, block_align, mask = 12, 0, None
    while pos + 8 <= size:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack(order + "4sI", f.read(8))
        if chunk_id == b"fmt ":
            body = f.read(min(chunk_size, 40))
            if len(body) >= 14:
                fmt_tag, _, _, _, block_align = struct.unpack(order + "HHIIH", body[:14])
                if fmt_tag == 0xFFFE and len(body) >= 24:
                    (mask,) = struct.unpack(order + "I", body[20:24])
        elif chunk_id == b"data":
            return WavHeader(chunk_size, size - pos - 8, block_align, mask)
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _check_wav_length(path: Path, header: WavHeader | None, frames_read: int, sr: int) -> None:
    """CorruptFileError naming ``path`` when its header declares more audio data than the file holds."""
    if header is None or header.data_bytes in _WAV_UNKNOWN_SIZES or header.data_bytes <= header.available:
        return
    if header.block_align > 0:
        declared = header.data_bytes // header.block_align
        raise CorruptFileError(
            path,
            f"truncated: the WAV header declares {declared} frames ({declared / sr:.3f} s), the file "
            f"holds {frames_read} ({frames_read / sr:.3f} s)",
        )
    raise CorruptFileError(
        path,
        f"truncated: the WAV header declares {header.data_bytes} bytes of audio, the file holds "
        f"{header.available}",
    )


def _file_layout(path: Path, channels: int, header: WavHeader | None) -> str | None:
    """``"5.1"`` when a six-channel file's channels are L R C LFE Ls Rs: a WAV without a speaker mask
    (the default order) or with a 5.1 one, and FLAC (its fixed six-channel order); else None."""
    if channels != 6:
        return None
    suffix = path.suffix.lower()
    if suffix in (".wav", ".wave"):
        mask = header.channel_mask if header is not None else None
        return SURROUND_5_1 if mask is None or mask in _WAV_5_1_MASKS else None
    return SURROUND_5_1 if suffix == ".flac" else None  # Vorbis / Opus and AIFF order 5.1 differently


def _finish(
    wave: Tensor,
    sr: int,
    path: Path,
    sample_rate: int | None,
    mono: bool,
    allow_silent: bool,
    layout: str | None = None,
) -> tuple[Tensor, int]:
    """Shared checks and conversions for every reader: ``wave`` is ``[C, S]`` at rate ``sr``."""
    if wave.numel() == 0 or wave.shape[-1] == 0:
        raise CorruptFileError(path, "no audio samples")
    if not torch.isfinite(wave).all():
        raise CorruptFileError(path, "non-finite audio samples")
    if not allow_silent and not wave.abs().amax() > 0:
        raise CorruptFileError(path, f"silent: all {wave.shape[-1]} samples are zero")
    if mono and wave.shape[0] > 1:
        wave = downmix_mono(wave, layout)
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
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    *,
    allow_silent: bool = False,
    data: bytes | None = None,
) -> tuple[Tensor, int]:
    """Decode a wav / flac / ogg file with soundfile -> ``(float32 [C or 1, S], rate)``.

    ``sample_rate``: resample to this rate (None keeps the file's). ``mono``: down-mix the channels
    (:func:`downmix_mono`; 5.1 for six-channel WAV and FLAC). A WAV whose header declares more frames
    than the file holds (cut short) raises :class:`~mmssl.errors.CorruptFileError` naming it.
    ``data``: the file's bytes, decoded from memory with the same checks (a shard member, see
    :mod:`mmssl.modalities.audio.shards`); ``path`` then only names them in errors, and its extension
    says what they are (``shard-000000.tar:000000012.wav``).
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        header = wav_header(path, data) if path.suffix.lower() in (".wav", ".wave") else None
        source = str(path) if data is None else io.BytesIO(data)
        samples, sr = sf.read(source, dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, struct.error) as err:
        # libsndfile's own words: its message would name a BytesIO object where it read bytes
        why = err.error_string if isinstance(err, sf.LibsndfileError) and data is not None else err
        raise CorruptFileError(path, f"{type(err).__name__}: {why}") from err
    _check_wav_length(path, header, samples.shape[0], int(sr))
    wave = torch.from_numpy(np.ascontiguousarray(samples.T))
    layout = _file_layout(path, wave.shape[0], header)
    return _finish(wave, int(sr), path, sample_rate, mono, allow_silent, layout)


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
    ``mono``: :func:`downmix_mono`, with the BS.775 5.1 down-mix when the stream's layout is 5.1
    (FFmpeg's order FL FR FC LFE BL|SL BR|SR).
    """
    path = Path(video_path)
    if not path.is_file():
        raise DataError(f"video file not found: {path}")
    chunks: list[np.ndarray] = []
    layout = None
    try:
        with av.open(str(path)) as container:
            if len(container.streams.audio) <= stream_index:
                raise DataError(f"no audio stream in {path} (it has {len(container.streams.audio)})")
            stream = container.streams.audio[stream_index]
            layout = _stream_layout(stream)
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
    return _finish(wave, int(sr), path, sample_rate, mono, allow_silent, layout)


def _stream_layout(stream: av.audio.stream.AudioStream) -> str | None:
    """``"5.1"`` when an audio stream's channels are FL FR FC LFE and two surrounds, in that order."""
    try:
        names = [channel.name for channel in stream.layout.channels]
    except AttributeError:
        return None
    return SURROUND_5_1 if names in _FFMPEG_5_1 else None


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
