"""Image shards: records with one encoded image member (``jpg``, ``png``, ...), decoded as image files are.

Written by ``data_tools/make_shards.py`` (which decodes every image once before writing it, so a set holds
no undecodable record) and read through :class:`~mmssl.data.shards.ShardStream` by the ``image_files``
dataset's ``shards`` option.
"""

from __future__ import annotations

import torch

from mmssl.data.shards import Record, ShardSamples, only_member, read_manifest
from mmssl.modalities.image.folder import IMG_EXTENSIONS, load_image
from mmssl.modalities.image.unlabelled import NO_LABEL

IMAGE_FIELDS: tuple[str, ...] = tuple(ext.lstrip(".") for ext in IMG_EXTENSIONS)


def decode_image_record(record: Record, where: str) -> tuple[torch.Tensor, int]:
    """``(uint8 [3, H, W], -1)``: the record's image, unlabelled as pretraining images are."""
    return load_image(where, record[only_member(record, IMAGE_FIELDS, "image", where)]), NO_LABEL


def image_shard_samples(location: str) -> ShardSamples:
    """The image shard set at ``location`` (a folder with ``shards.json``, or that file)."""
    return ShardSamples(read_manifest(location, modality="image"), decode_image_record)
