"""Reading and writing videos, frame folders and segmentation masks; the DAVIS layout.

- Video files (mp4, avi, webm, mkv, mov ...) are decoded with decord, which seeks to the frames asked
  for and can scale them inside ffmpeg (``size=``), much cheaper than decoding at full resolution and
  resizing afterwards. Anything decord cannot open or decode raises
  :class:`~mmssl.errors.CorruptFileError` naming the file.
- Truncated files: decord and TorchCodec read the packet index when they open a file, and a file cut
  at a packet boundary opens as a complete, shorter video (an mp4 whose index sits at the front, cut
  in half, reads as a few frames, decord repeating the last decodable one). Every open therefore
  compares what the decoder found (frame count, end of the last frame) with what the container's
  header declares (PyAV, header only: no decoding, once per file and process) and raises
  :class:`~mmssl.errors.CorruptFileError` "truncated: container says N frames / D s, only M
  decodable" (:func:`check_complete`).
- Frame folders hold one image per frame, ordered by natural sort of the file names
  (``2.jpg`` before ``10.jpg``).
- Videos are written with PyAV (H.264 in mp4/mkv/mov, MPEG-4 part 2 in avi, VP9 in webm).
- DAVIS layout (Perazzi et al., CVPR 2016; Pont-Tuset et al., arXiv:1704.00675)::

      root/JPEGImages/<resolution>/<seq>/00000.jpg ...
      root/Annotations/<resolution>/<seq>/00000.png ...
      root/ImageSets/2017/{train,val}.txt      one sequence name per line (optional)
      root/ImageSets/<resolution>/{train,val}.txt   DAVIS-2016: "/JPEGImages/480p/<seq>/00000.jpg ..." lines

  DAVIS-2017 masks are palette PNGs (mode "P") whose pixel values are the object ids (0 = background);
  DAVIS-2016 masks are grayscale 0/255 with one object. :func:`read_mask` reads both (and RGB
  renderings of the DAVIS palette) as integer id maps.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from mmssl.errors import CorruptFileError, DataError

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
FRAME_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Container suffix -> PyAV encoders, in order of preference (the first this FFmpeg build has is used).
_ENCODERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "mpeg4"),
    ".mkv": ("libx264", "mpeg4"),
    ".mov": ("libx264", "mpeg4"),
    ".avi": ("mpeg4",),
    ".webm": ("libvpx-vp9", "libvpx"),
}

Size = tuple[int, int]
# Which library decodes video files: decord (the default; its last release is from 2021) or TorchCodec
# (PyTorch's decoder, which torchvision now points to; needs FFmpeg's shared libraries).
VIDEO_BACKENDS: tuple[str, ...] = ("decord", "torchcodec")


def check_backend(backend: str) -> str:
    if backend not in VIDEO_BACKENDS:
        raise DataError(f"unknown video backend {backend!r}; choose one of {', '.join(VIDEO_BACKENDS)}")
    return backend


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``frame2`` < ``frame10``."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


# ------------------------------------------------------------------------------------ video files


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    height: int
    width: int
    fps: float


@dataclass(frozen=True)
class DeclaredLength:
    """What a container's header says about its (first) video stream: ``num_frames`` (0: not said, e.g.
    Matroska) and ``seconds`` (0.0: not said)."""

    num_frames: int
    seconds: float


def _hms_seconds(text: str) -> float:
    """``"HH:MM:SS.nnnnnnnnn"`` (Matroska's per-track ``DURATION`` tag) -> seconds; 0.0 when unreadable."""
    try:
        hours, minutes, seconds = text.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 0.0


#: FFmpeg demuxers whose header declares the video's frame count or duration (MP4 / MOV, Matroska /
#: WebM, AVI)
_HEADER_LENGTH = frozenset({"mov", "mp4", "matroska", "webm", "avi"})


@functools.lru_cache(maxsize=4096)
def _declared(path: str, size: int, mtime_ns: int) -> DeclaredLength | None:
    import av

    try:
        with av.open(path) as container:
            # Only containers whose header states the length: for the others (MPEG-PS / TS ...) FFmpeg
            # estimates it (from timestamps or the bit rate), which says nothing about truncation.
            if not container.streams.video or not set(container.format.name.split(",")) & _HEADER_LENGTH:
                return None
            stream = container.streams.video[0]
            seconds = 0.0
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif "DURATION" in stream.metadata:
                seconds = _hms_seconds(stream.metadata["DURATION"])
            elif len(container.streams) == 1 and container.duration:  # the container's is the stream's
                seconds = container.duration / av.time_base
            return DeclaredLength(int(stream.frames or 0), max(seconds, 0.0))
    except (av.FFmpegError, OSError, ValueError):
        return None  # the decoder's own open is what decides whether the file is readable


def declared_length(path: str | Path) -> DeclaredLength | None:
    """The header's frame count and duration of ``path``'s video stream (PyAV; the header only, nothing
    decoded; remembered per file, size and modification time), or None when PyAV cannot open it or the
    container does not declare them (MP4 / MOV, Matroska / WebM and AVI do)."""
    path = Path(path)
    st = path.stat()
    return _declared(str(path), st.st_size, st.st_mtime_ns)


def check_complete(path: Path, decodable: int, end_s: float | None, fps: float) -> None:
    """CorruptFileError naming ``path`` when the decoder found clearly less than the header declares:
    ``decodable`` frames (its packet index) ending at ``end_s`` seconds against the declared frame count
    (tolerance 1 %, at least one frame) and duration (tolerance 3 frames or 2 %: an audio track, B-frame
    delay or rounding never trip it)."""
    declared = declared_length(path)
    if declared is None:
        return
    frames, seconds = declared.num_frames, declared.seconds
    frame_s = 1.0 / fps if fps > 0 else (seconds / frames if frames else 0.0)
    short_count = frames > 0 and decodable < frames - max(1, frames // 100)
    short_time = seconds > 0 and end_s is not None and end_s < seconds - max(3 * frame_s, 0.02 * seconds)
    if short_count or short_time:
        says = f"{frames} frames / {seconds:.3f} s" if frames else f"{seconds:.3f} s"
        up_to = f" (up to {end_s:.3f} s)" if end_s is not None else ""
        raise CorruptFileError(path, f"truncated: container says {says}, only {decodable} decodable{up_to}")


def _open(path: Path, size: Size | None = None, num_threads: int = 1, data: bytes | None = None):
    """A decord ``VideoReader`` of the file ``path`` or of ``data``, a file's bytes (``path`` then names it);
    every failure (missing codec, truncation, garbage) -> CorruptFileError."""
    import decord  # imported lazily: importing it starts no threads, but keeps `mmssl list` light

    if data is None and not path.is_file():
        raise DataError(f"video file not found: {path}")
    height, width = size if size is not None else (-1, -1)
    try:
        source = str(path) if data is None else io.BytesIO(data)
        reader = decord.VideoReader(source, width=int(width), height=int(height), num_threads=num_threads)
    except Exception as err:  # decord raises DECORDError / RuntimeError with ffmpeg's message
        raise CorruptFileError(path, _first_line(err)) from err
    if len(reader) == 0:
        raise CorruptFileError(path, "no decodable video frames")
    if data is not None:  # a shard member: make_shards.py checked the file's length when it wrote it
        return reader
    try:
        end_s = float(reader.get_frame_timestamp(len(reader) - 1)[-1])
        fps = float(reader.get_avg_fps())
    except Exception:  # no timestamps: the frame count alone is compared
        end_s, fps = None, 0.0
    check_complete(path, len(reader), end_s, fps)
    return reader


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def video_info(path: str | Path, backend: str = "decord", data: bytes | None = None) -> VideoInfo:
    """Frame count, frame size and average frame rate of a video file (opened with ``backend``: the
    decoders may count a file's frames differently, so scan with the one that will read it). A file
    holding fewer frames than its header declares raises :class:`~mmssl.errors.CorruptFileError`
    ("truncated: ..."; :func:`check_complete`); only the first frame is decoded. ``data``: the file's
    bytes, read from memory (a shard member; ``path`` names it in errors; the length check is
    make_shards.py's, at write time)."""
    path = Path(path)
    if check_backend(backend) == "torchcodec":
        meta = _torchcodec_decoder(path, None, 1, data).metadata
        return VideoInfo(
            int(meta.num_frames), int(meta.height), int(meta.width), float(meta.average_fps or 0.0)
        )
    reader = _open(path, data=data)
    try:
        height, width = reader[0].shape[:2]
    except Exception as err:
        raise CorruptFileError(path, _first_line(err)) from err
    return VideoInfo(len(reader), int(height), int(width), float(reader.get_avg_fps()))


def _check_indices(indices: Sequence[int], n: int, where: Path) -> list[int]:
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise DataError(f"frame index {bad[0]} out of range for {where} ({n} frames)")
    return out


def read_video(
    path: str | Path,
    indices: Sequence[int] | None = None,
    *,
    size: Size | None = None,
    num_threads: int = 1,
    backend: str = "decord",
    data: bytes | None = None,
) -> torch.Tensor:
    """Decode frames of a video file: uint8 ``[T, H, W, 3]`` (RGB).

    ``indices``: which frames (any order, repeats allowed); None reads them all. ``size=(h, w)``
    scales frames while decoding (ffmpeg's scaler). ``num_threads``: decoder threads (one keeps
    data-loader workers from competing for cores). ``backend``: ``decord`` or ``torchcodec`` (its scaler
    is bilinear with antialiasing; decord's is FFmpeg's bicubic). Raises
    :class:`~mmssl.errors.CorruptFileError` naming the file when it cannot be opened or a frame cannot be
    decoded. ``data``: the file's bytes, decoded from memory (``path`` names them), as :func:`video_info`.
    """
    path = Path(path)
    if check_backend(backend) == "torchcodec":
        return _read_torchcodec(path, indices, size, num_threads, data)
    reader = _open(path, size, num_threads, data)
    idx = list(range(len(reader))) if indices is None else _check_indices(indices, len(reader), path)
    try:
        try:
            frames = reader.get_batch(idx).asnumpy()
        except Exception as err:
            if "size must exactly match" not in str(err):
                raise
            frames = _read_padded_frames(reader, idx)
    except Exception as err:
        raise CorruptFileError(path, _first_line(err)) from err
    return torch.from_numpy(np.ascontiguousarray(frames))


def _torchcodec_decoder(path: Path, size: Size | None, num_threads: int, data: bytes | None = None):
    """A TorchCodec ``VideoDecoder`` of the file ``path`` or of ``data`` (frames ``[T, H, W, 3]``, scaled
    to ``size`` while decoding); every failure -> CorruptFileError naming the file."""
    try:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize
    except (ImportError, RuntimeError, OSError) as err:  # e.g. FFmpeg's shared libraries are missing
        raise DataError(f"data.backend=torchcodec cannot load TorchCodec: {_first_line(err)}") from err
    if data is None and not path.is_file():
        raise DataError(f"video file not found: {path}")
    try:
        decoder = VideoDecoder(
            str(path) if data is None else data,
            dimension_order="NHWC",
            num_ffmpeg_threads=num_threads,
            seek_mode="exact",
            transforms=[Resize((int(size[0]), int(size[1])))] if size is not None else None,
        )
    except (RuntimeError, ValueError) as err:
        raise CorruptFileError(path, _first_line(err)) from err
    meta = decoder.metadata
    if not meta.num_frames:
        raise CorruptFileError(path, "no decodable video frames")
    if data is not None:  # a shard member: checked when it was written
        return decoder
    end_s = meta.end_stream_seconds_from_content
    check_complete(
        path, int(meta.num_frames), float(end_s) if end_s is not None else None, meta.average_fps or 0.0
    )
    return decoder


def _read_torchcodec(
    path: Path, indices: Sequence[int] | None, size: Size | None, num_threads: int, data: bytes | None
) -> torch.Tensor:
    decoder = _torchcodec_decoder(path, size, num_threads, data)
    n = int(decoder.metadata.num_frames)
    idx = list(range(n)) if indices is None else _check_indices(indices, n, path)
    try:
        return decoder.get_frames_at(idx).data.contiguous()
    except (RuntimeError, ValueError, IndexError) as err:
        raise CorruptFileError(path, _first_line(err)) from err


def _read_padded_frames(reader, idx: list[int]) -> np.ndarray:
    """Work around a decord bug: when FFmpeg pads a row of a narrow frame (e.g. 48 px: 144 bytes
    stored in 192) to an exact multiple of the width, decord takes the padding for extra channels,
    returns ``[H, W, 4]`` frames and ``get_batch`` fails. Read frame by frame and drop the padding."""
    out = {}
    for i in sorted(set(idx)):
        frame = reader[i].asnumpy()
        height, width = frame.shape[:2]
        out[i] = frame.reshape(height, -1)[:, : width * 3].reshape(height, width, 3)
    return np.stack([out[i] for i in idx])


def write_video(
    path: str | Path,
    frames: torch.Tensor | np.ndarray,
    fps: float = 8,
    *,
    crf: int = 18,
    preset: str = "fast",
    chroma: str = "420",
    faststart: bool = False,
) -> Path:
    """Encode uint8 ``[T, H, W, 3]`` RGB frames to ``path`` with PyAV; the suffix picks the codec.

    H.264 (``libx264``) for .mp4/.mkv/.mov, MPEG-4 part 2 for .avi, VP9 for .webm. ``crf``: constant
    quality (0 best .. 51; 18 is visually lossless for natural video); ``preset``: x264's speed/size
    trade-off. ``chroma``: "420" (what cameras and players use; height and width must be even) or
    "444" (full-resolution colour, H.264/VP9 only: small saturated textures survive it). ``faststart``
    (.mp4/.mov): the index (``moov``) at the front of the file, the streaming layout most downloaded
    files have, instead of at the end. Returns the path.
    """
    import av

    path = Path(path)
    array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"write_video needs uint8 [T, H, W, 3] frames, got {array.dtype} {tuple(array.shape)}"
        )
    if chroma not in ("420", "444"):
        raise ValueError(f"chroma must be '420' or '444', got '{chroma}'")
    t, h, w, _ = array.shape
    if t == 0 or (chroma == "420" and (h % 2 or w % 2)):
        raise ValueError(f"write_video needs at least one frame and even height/width (4:2:0), got {h}x{w}")
    suffix = path.suffix.lower()
    if suffix not in _ENCODERS:
        raise ValueError(f"cannot write '{suffix}' videos; use one of {', '.join(_ENCODERS)}")
    codec = next((c for c in _ENCODERS[suffix] if c in av.codecs_available), None)
    if codec is None:
        raise RuntimeError(f"this FFmpeg build has none of the encoders {', '.join(_ENCODERS[suffix])}")
    if chroma == "444" and codec not in ("libx264", "libvpx-vp9"):
        raise ValueError(f"4:4:4 chroma needs H.264 or VP9; '{suffix}' uses {codec}")
    if faststart and suffix not in (".mp4", ".mov"):
        raise ValueError(f"faststart applies to .mp4 / .mov files, not '{suffix}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, f"yuv{chroma}p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": preset}
        elif codec.startswith("libvpx"):
            stream.options = {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "4"}
        else:  # mpeg4: fixed quantiser, 1 (best) .. 31
            stream.codec_context.qscale = 2
            stream.options = {"qscale": "2"}
        for frame in array:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(rgb):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------------- frame folders


def list_frames(folder: str | Path, extensions: Sequence[str] = FRAME_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder``, in natural order of their names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"frame folder not found: {folder}")
    exts = tuple(e.lower() for e in extensions)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_image(path: str | Path, size: Size | None = None) -> np.ndarray:
    """One RGB frame as uint8 ``[H, W, 3]``; ``size=(h, w)`` resizes (bilinear, antialiased).

    JPEGs are decoded at a reduced DCT scale when that still covers ``size`` (PIL's ``draft``):
    several times faster for 480p frames read at a few hundred pixels.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if size is not None:
                img.draft("RGB", (size[1], size[0]))
            rgb = img.convert("RGB")  # forces a full decode: truncated files fail here
            if size is not None and rgb.size != (size[1], size[0]):
                rgb = rgb.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    return np.asarray(rgb)


def read_frame_folder(
    folder: str | Path, indices: Sequence[int] | None = None, *, size: Size | None = None
) -> torch.Tensor:
    """Frames of a frame folder (see :func:`list_frames`): uint8 ``[T, H, W, 3]``.

    ``indices`` index the sorted frame list (None: all). All frames must have the same size,
    unless ``size=(h, w)`` resizes them. Bad images raise CorruptFileError naming the image.
    """
    files = list_frames(folder)
    if not files:
        raise DataError(f"no frames with extensions {', '.join(FRAME_EXTENSIONS)} in {folder}")
    idx = range(len(files)) if indices is None else _check_indices(indices, len(files), Path(folder))
    frames = [read_image(files[i], size) for i in idx]
    first = frames[0].shape
    for i, f in zip(idx, frames):
        if f.shape != first:
            raise CorruptFileError(
                files[i], f"frame size {f.shape[:2]} differs from {first[:2]} of the first frame"
            )
    return torch.from_numpy(np.stack(frames))


# ------------------------------------------------------------------------------------------- masks


@functools.lru_cache(maxsize=4)
def _palette(n: int) -> np.ndarray:
    ids = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def davis_palette(n: int = 256) -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map, uint8 ``[n, 3]``: id 0 black, 1 (128, 0, 0), 2 (0, 128, 0) ...

    Bits 0, 1, 2 of the id go to the most significant free bit of R, G, B; then bits 3-5 to the
    next bit down, and so on, so that small ids get well separated colours.
    """
    return _palette(n).copy()


def read_mask(path: str | Path) -> np.ndarray:
    """An object-id map, int64 ``[H, W]`` (0 = background, 1..K = objects).

    - mode "P" (DAVIS-2017): pixel values are the ids, as stored;
    - grayscale ("L", "1", "I"): values in {0, 255} or any value above 127 mean a binary DAVIS-2016
      mask (``> 127`` -> object 1); otherwise the values are ids (masks saved as small integers);
    - RGB(A): gray pixels are read as grayscale, coloured ones are looked up in :func:`davis_palette`.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.asarray(img)
    except (OSError, ValueError, SyntaxError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    if mode == "P":
        return array.astype(np.int64)
    if mode in ("RGB", "RGBA"):
        rgb = array[..., :3].astype(np.int64)
        if (rgb == rgb[..., :1]).all():
            array, mode = rgb[..., 0], "L"
        else:
            codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            pal = _palette(256).astype(np.int64)
            pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
            lookup = {int(c): i for i, c in enumerate(pal_codes)}
            out = np.zeros(codes.shape, dtype=np.int64)
            for code in np.unique(codes):
                if int(code) not in lookup:
                    colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
                    raise CorruptFileError(path, f"mask colour {colour} is not in the DAVIS palette")
                out[codes == code] = lookup[int(code)]
            return out
    if mode in ("L", "1", "I", "I;16", "LA", "L;16"):
        values = (array[..., 0] if array.ndim == 3 else array).astype(np.int64)
        if mode == "1" or values.max(initial=0) > 127:
            return (values > 127 if mode != "1" else values > 0).astype(np.int64)
        return values
    raise CorruptFileError(path, f"unsupported mask image mode '{mode}'")


def write_palette_mask(path: str | Path, mask: np.ndarray | torch.Tensor) -> Path:
    """Save an id map (values 0..255) as a DAVIS-2017 palette PNG."""
    array = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise ValueError(f"palette masks hold ids 0..255, got {array.min()}..{array.max()}")
    img = Image.fromarray(array.astype(np.uint8), mode="P")
    img.putpalette(_palette(256).tobytes())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


# ------------------------------------------------------------------------------------ DAVIS layout


@dataclass
class VideoSequence:
    """One video with (optional) per-frame instance masks.

    ``frames``: uint8 ``[T, H, W, 3]``; ``masks``: int64 ``[T, H, W]`` with 0 = background and
    1..K = objects, -1 on frames the layout gives no annotation for, or None when the sequence has
    no annotations at all; ``num_objects`` = K; ``frame_names``: file stems, e.g. ``"00000"``.
    """

    name: str
    frames: torch.Tensor
    masks: torch.Tensor | None
    num_objects: int
    frame_names: list[str] = field(default_factory=list)


def davis_split_file(root: str | Path, resolution: str, split: str, year: str | None = None) -> Path | None:
    """The ``ImageSets`` list for ``split`` (2017 layout first, then 2016), or None."""
    root = Path(root).expanduser()
    years = [year] if year else ["2017", "2016"]
    candidates = [root / "ImageSets" / y / f"{split}.txt" for y in years] + [
        root / "ImageSets" / resolution / f"{split}.txt"
    ]
    return next((p for p in candidates if p.is_file()), None)


def _sequences_in_split_file(path: Path) -> list[str]:
    """Names from a DAVIS-2017 list (one name a line) or a DAVIS-2016 one (paths of frame files)."""
    names: list[str] = []
    for line in path.read_text().splitlines():
        token = line.strip().split()[0] if line.strip() else ""
        if not token:
            continue
        name = Path(token).parent.name if "/" in token else token
        if name not in names:
            names.append(name)
    return names


def list_davis_sequences(
    root: str | Path, resolution: str = "480p", split: str | None = None, *, year: str | None = None
) -> list[str]:
    """Sequence names of a DAVIS-layout root.

    With ``split`` (e.g. "train", "val") and an ``ImageSets`` list for it (``ImageSets/<year>/`` with
    ``year`` 2017 then 2016 when not given, or the DAVIS-2016 ``ImageSets/<resolution>/``), the
    names in that list; otherwise every folder under ``JPEGImages/<resolution>``, sorted.
    """
    root = Path(root).expanduser()
    frames_dir = root / "JPEGImages" / resolution
    if not frames_dir.is_dir():
        raise DataError(f"not a DAVIS layout: {frames_dir} not found")
    if split is not None:
        split_file = davis_split_file(root, resolution, split, year)
        if split_file is not None:
            names = _sequences_in_split_file(split_file)
            missing = [n for n in names if not (frames_dir / n).is_dir()]
            if missing:
                raise DataError(
                    f"{split_file} lists sequences missing under {frames_dir}: {', '.join(missing[:5])}"
                )
            return names
    return sorted(
        (d.name for d in frames_dir.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key
    )


def _resize_frames(frames: torch.Tensor, size: Size) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> ``[T, h, w, 3]``, bilinear with antialiasing."""
    chw = frames.permute(0, 3, 1, 2)
    return TF.resize(chw, list(size), antialias=True).permute(0, 2, 3, 1).contiguous()


def resize_masks(masks: torch.Tensor, size: Size) -> torch.Tensor:
    """int64 ``[T, H, W]`` id maps -> ``[T, h, w]`` by nearest neighbour (pixel-centre aligned)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    resized = F.interpolate(masks[:, None].float(), size=tuple(size), mode="nearest-exact")
    return resized[:, 0].round().long()


def load_davis_sequence(
    root: str | Path,
    name: str,
    resolution: str = "480p",
    max_frames: int | None = None,
    size: Size | None = None,
) -> VideoSequence:
    """Frames and masks of one DAVIS sequence (see the module docstring for the layout).

    Masks are matched to frames by file stem; a frame with no mask file gets -1 everywhere (e.g.
    DAVIS test-dev, annotated on the first frame only); no ``Annotations`` folder gives ``masks=None``.
    ``max_frames`` keeps the first frames; ``size=(h, w)`` resizes frames (bilinear) and masks
    (nearest). Corrupt images or masks raise CorruptFileError naming them.
    """
    root = Path(root).expanduser()
    frame_dir = root / "JPEGImages" / resolution / name
    if not frame_dir.is_dir():
        raise DataError(f"DAVIS sequence '{name}' not found: {frame_dir}")
    files = list_frames(frame_dir)
    if not files:
        raise DataError(f"no frames in {frame_dir}")
    if max_frames is not None:
        files = files[: max(1, int(max_frames))]
    size = tuple(int(s) for s in size) if size is not None else None  # type: ignore[assignment]
    images = [read_image(f, size) for f in files]
    for f, image in zip(files, images):
        if image.shape != images[0].shape:
            raise CorruptFileError(
                f, f"frame size {image.shape[:2]} differs from {images[0].shape[:2]} of {files[0].name}"
            )
    frames = torch.from_numpy(np.stack(images))

    mask_dir = root / "Annotations" / resolution / name
    masks = None
    if mask_dir.is_dir():
        by_stem = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() == ".png"}
        maps = []
        for f in files:
            if f.stem in by_stem:
                m = torch.from_numpy(read_mask(by_stem[f.stem]))
                if size is None and tuple(m.shape) != tuple(frames.shape[1:3]):
                    raise CorruptFileError(
                        by_stem[f.stem],
                        f"mask size {tuple(m.shape)} differs from frame size {tuple(frames.shape[1:3])}",
                    )
                maps.append(resize_masks(m[None], size)[0] if size is not None else m)
            else:
                maps.append(torch.full(tuple(frames.shape[1:3]), -1, dtype=torch.long))
        masks = torch.stack(maps)
    num_objects = int(masks.max().clamp(min=0)) if masks is not None else 0
    return VideoSequence(name, frames, masks, num_objects, [f.stem for f in files])
