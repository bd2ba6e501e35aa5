"""The bad-input matrix (issue 15): every reader x every kind of bad file gives a named error (the toolkit's
DataError / CorruptFileError / ConfigError, whose message names the file) -- never a raw traceback from a
library, never silently wrong data. docs/benchmarks.md reports its size (readers x faults = cases)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from mmssl.config import load_recipe
from mmssl.data.shards import ShardSetWriter, iter_records, read_manifest
from mmssl.errors import ConfigError, CorruptFileError, DataError
from mmssl.modalities.audio.io import read_audio
from mmssl.modalities.image.folder import load_image
from mmssl.modalities.image.shards import decode_pixels, encode_pixels
from mmssl.modalities.pointcloud.io import read_mesh, read_points
from mmssl.modalities.text.corpus import read_jsonl, read_plain_file
from mmssl.modalities.video.io import read_image, read_mask, read_video, video_info, write_video

NAMED = (DataError, CorruptFileError, ConfigError)


def _png(path: Path) -> None:
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)


def _bomb_png(path: Path) -> None:
    """A valid PNG header declaring 100,000 x 100,000 pixels (10^10: beyond PIL's bomb limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def _video(path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    write_video(path, frames, fps=8)


def _wav(path: Path) -> None:
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32), 8000)


def _xyz(path: Path) -> None:
    path.write_text("\n".join(f"{i} {i + 1} {i + 2}" for i in range(20)) + "\n")


def _obj(path: Path) -> None:
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")


def _txt(path: Path) -> None:
    path.write_text("a paragraph of text.\n\nanother one.\n")


def _jsonl(path: Path) -> None:
    path.write_text('{"text": "one"}\n{"text": "two"}\n')


def _recipe(path: Path) -> None:
    path.write_text(Path("recipes/quickstart.yaml").read_text())


def _shard(path: Path) -> None:
    writer = ShardSetWriter(path.parent / "set", modality="image", overwrite=True)
    for i in range(3):  # 3 x 4.5 KiB of members in a tar padded to 20 KiB: cut at half is mid-record
        writer.write({"__key__": f"{i:06d}", "txt": b"x" * 4000})
    writer.close()
    path.write_bytes((path.parent / "set" / "shard-000000.tar").read_bytes())


def _read_shard(path: Path) -> object:
    return list(iter_records(path, expected=3))


def _pixels(path: Path) -> None:
    path.write_bytes(encode_pixels(torch.full((3, 8, 8), 128, dtype=torch.uint8)))


def _read_pixels(path: Path) -> object:
    """A pixel shard's image member (``make_shards.py image --pixels``), as its decoder reads the bytes."""
    return decode_pixels(path.read_bytes(), str(path))


# reader name -> (suffix, write a good file, read it)
READERS: dict[str, tuple[str, Callable[[Path], None], Callable[[Path], object]]] = {
    "image file": (".png", _png, load_image),
    "video frame": (".png", _png, read_image),
    "DAVIS mask": (".png", _png, read_mask),
    "video (decord)": (".mp4", _video, lambda p: read_video(p, backend="decord")),
    "video (torchcodec)": (".mp4", _video, lambda p: read_video(p, backend="torchcodec")),
    "video info": (".mp4", _video, video_info),
    "audio": (".wav", _wav, read_audio),
    "point cloud": (".xyz", _xyz, read_points),
    "mesh": (".obj", _obj, read_mesh),
    "text file": (".txt", _txt, read_plain_file),
    "JSONL": (".jsonl", _jsonl, read_jsonl),
    "recipe": (".yaml", _recipe, load_recipe),
    "shard": (".tar", _shard, _read_shard),
    "pixel-shard image": (".npy", _pixels, _read_pixels),
}


def _zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def _wrong_content(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)  # binary noise behind the right extension


FAULTS: dict[str, Callable[[Path], None]] = {
    "zero-byte": _zero_byte,
    "truncated": _truncated,
    "wrong content": _wrong_content,
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("reader", list(READERS))
def test_bad_file_gives_a_named_error(tmp_path, reader, fault):
    if reader == "video (torchcodec)":
        pytest.importorskip("torchcodec.decoders", reason="TorchCodec needs FFmpeg's shared libraries")
    suffix, write, read = READERS[reader]
    path = tmp_path / f"sample{suffix}"
    write(path)
    read(path)  # the good file reads
    FAULTS[fault](path)
    if reader in ("text file", "JSONL") and fault == "truncated":
        pytest.skip("a text file cut at half is a shorter, valid text file: nothing can tell")
    with pytest.raises(NAMED) as info:
        read(path)
    assert path.name in str(info.value) or str(path.parent) in str(info.value), str(info.value)


NON_FINITE = {
    "point cloud": ("sample.xyz", "0 0 0\n1 nan 0\n0 1 0\n"),
    "mesh": ("sample.obj", "v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n"),
}


@pytest.mark.parametrize("reader", list(NON_FINITE))
def test_nan_and_inf_values_are_named(tmp_path, reader):
    name, text = NON_FINITE[reader]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(NAMED, match=name):
        (read_points if reader == "point cloud" else read_mesh)(path)


def test_decompression_bomb_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "bomb.png"
    _bomb_png(path)
    for read in (load_image, read_image):
        with pytest.raises(NAMED, match="bomb.png"):
            read(path)


def test_empty_folders_are_named(tmp_path):
    from mmssl.modalities.image.folder import ImageFolderDataset
    from mmssl.modalities.image.unlabelled import UnlabelledImages

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NAMED, match="empty"):
        ImageFolderDataset(empty)
    with pytest.raises(NAMED, match="empty"):
        UnlabelledImages(empty)
    with pytest.raises(NAMED, match="shard manifest not found"):
        read_manifest(empty)


def test_the_matrix_size_reported_in_the_docs():
    cases = len(READERS) * len(FAULTS) + len(NON_FINITE) + 2 + 3  # + bomb (2 readers) + empty folders (3)
    docs = Path("docs/benchmarks.md").read_text()
    assert f"{len(READERS)} readers × {len(FAULTS)} faults" in docs and f"{cases} cases" in docs
