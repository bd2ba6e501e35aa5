"""Image shards: records with one image member, read by the ``image_files`` dataset's ``shards`` option.

Two kinds of record, written by ``data_tools/make_shards.py`` (which decodes every image once before it
writes it, so a set holds no undecodable record):

- the source file's bytes under its extension (``jpg``, ``png``, ...), decoded as image files are;
- with ``make_shards.py image --pixels``, the decoded image itself, uint8 ``[3, H, W]`` in NumPy's ``.npy``
  format (member ``npy``). Reading it skips the JPEG/PNG decode, the larger cost of a small image (about
  250 µs of a 32 px CIFAR-10 JPEG against ~20 µs to parse the array), at the price of size: 3 KiB a CIFAR
  image against ~1 KiB of JPEG, and ``3 H W`` bytes in general, so it pays for small images only. This is
  FFCV's "raw" image field, in the WebDataset format.

Both are read through :class:`~mmssl.data.shards.ShardStream`. Of a ``.npy`` member only the header is
parsed (by NumPy's header reader); the data are taken as raw uint8 bytes, so nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch

from mmssl.data.shards import Record, ShardSamples, only_member, read_manifest
from mmssl.errors import CorruptFileError
from mmssl.modalities.image.folder import IMG_EXTENSIONS, load_image
from mmssl.modalities.image.unlabelled import NO_LABEL

PIXELS_FIELD = "npy"
IMAGE_FIELDS: tuple[str, ...] = (*(ext.lstrip(".") for ext in IMG_EXTENSIONS), PIXELS_FIELD)


def encode_pixels(image: torch.Tensor) -> bytes:
    """uint8 ``[3, H, W]`` -> the bytes of a ``.npy`` member (what :func:`decode_pixels` reads back)."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 [3, H, W] image, got {image.dtype} {list(image.shape)}")
    buffer = io.BytesIO()
    np.save(buffer, image.numpy(), allow_pickle=False)
    return buffer.getvalue()


def decode_pixels(data: bytes, where: str) -> torch.Tensor:
    """The uint8 ``[3, H, W]`` image of a ``.npy`` member; :class:`CorruptFileError` naming ``where`` for
    anything else (not ``.npy``, another dtype or shape, a pickled object, missing or extra bytes).

    The header is parsed by NumPy's own reader (never unpickled) and cached: the images of a set of one
    size (CIFAR-10, or any set resized before it was written) share one header, and ``np.load`` parsing it
    anew cost ~100 µs a record, more than the tar read itself."""
    try:
        shape, fortran_order, dtype, offset = _npy_layout(data)
    except Exception as err:  # NumPy's header parser raises what its tokenizer and literal_eval raise
        raise CorruptFileError(where, f"not a .npy image ({type(err).__name__}: {err})") from err
    if (
        dtype != np.uint8
        or len(shape) != 3
        or shape[0] != 3
        or not all(type(dim) is int and dim > 0 for dim in shape)
    ):
        raise CorruptFileError(where, f"a .npy image must be uint8 [3, H, W], got {dtype} {list(shape)}")
    size = shape[0] * shape[1] * shape[2]
    if len(data) - offset != size:
        raise CorruptFileError(
            where, f"a {list(shape)} .npy image holds {len(data) - offset} bytes, not {size}"
        )
    array = np.frombuffer(data, np.uint8, size, offset).reshape(shape, order="F" if fortran_order else "C")
    # frombuffer gives a read-only view of the member's bytes (the sample is modified in place later):
    # one copy, into C order, makes it writable and contiguous
    return torch.from_numpy(array.copy(order="C"))


def _npy_layout(data: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file's bytes (format 1.0 or 2.0)."""
    if data[:6] != b"\x93NUMPY" or len(data) < 12:
        raise ValueError("no .npy magic string")
    if data[7] != 0:
        raise ValueError(f".npy format version {data[6]}.{data[7]} (1.0 and 2.0 are read)")
    if data[6] == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
    elif data[6] == 2:
        end = 12 + int.from_bytes(data[8:12], "little")
    else:
        raise ValueError(f".npy format version {data[6]} (1 and 2 are read)")
    if len(data) < end:
        raise ValueError("the header is cut")
    return (*_npy_header(bytes(data[:end])), end)


@functools.lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    stream = io.BytesIO(header)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def decode_image_record(record: Record, where: str) -> tuple[torch.Tensor, int]:
    """``(uint8 [3, H, W], -1)``: the record's image, unlabelled as pretraining images are."""
    member = only_member(record, IMAGE_FIELDS, "image", where)
    if member == PIXELS_FIELD:
        return decode_pixels(record[member], where), NO_LABEL
    return load_image(where, record[member]), NO_LABEL


def image_shard_samples(location: str) -> ShardSamples:
    """The image shard set at ``location`` (a folder with ``shards.json``, or that file)."""
    return ShardSamples(read_manifest(location, modality="image"), decode_image_record)
