"""Image shards: records with one encoded image member (``jpg``, ``png``, ...), decoded as image files are.

Written by ``data_tools/make_shards.py`` (which decodes every image once before writing it, so a set holds
no undecodable record) and read through :class:`~mmssl.data.shards.ShardStream` by the ``image_files``
dataset's ``shards`` option.
"""

from __future__ import annotations

import torch

from mmssl.data.shards import Record, ShardSamples, read_manifest
from mmssl.errors import CorruptFileError
from mmssl.modalities.image.folder import IMG_EXTENSIONS, load_image
from mmssl.modalities.image.unlabelled import NO_LABEL

IMAGE_FIELDS: tuple[str, ...] = tuple(ext.lstrip(".") for ext in IMG_EXTENSIONS)


def image_member(record: Record, where: str) -> str:
    """The record's image member name (its extension); :class:`CorruptFileError` when it has none or two."""
    found = [field for field in record if field in IMAGE_FIELDS]
    if len(found) != 1:
        raise CorruptFileError(
            where, f"needs exactly one image member ({', '.join(IMAGE_FIELDS)}), got {found or 'none'}"
        )
    return found[0]


def decode_image_record(record: Record, where: str) -> tuple[torch.Tensor, int]:
    """``(uint8 [3, H, W], -1)``: the record's image, unlabelled as pretraining images are."""
    return load_image(where, record[image_member(record, where)]), NO_LABEL


def image_shard_samples(location: str) -> ShardSamples:
    """The image shard set at ``location`` (a folder with ``shards.json``, or that file)."""
    return ShardSamples(read_manifest(location, modality="image"), decode_image_record)
