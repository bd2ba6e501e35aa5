"""Video shards: records with one encoded video member (``mp4``, ``webm``, ...), decoded from memory.

Written by ``data_tools/make_shards.py video`` (each file opened and its length checked against its header
before it is written, so a set holds no undecodable or truncated record) and streamed through
:class:`~mmssl.data.shards.ShardStream` by the ``video_folder`` dataset's ``shards`` option, as Kinetics-
scale sets are read (see docs/scaling.md). A record decodes to an in-memory
:class:`~mmssl.modalities.video.sources.VideoSource`; :class:`~mmssl.modalities.video.clips.VideoClipDataset`
samples and decodes its clip exactly as it does for a file.
"""

from __future__ import annotations

import functools
from pathlib import Path

from mmssl.data.shards import Record, ShardSamples, only_member, read_manifest
from mmssl.modalities.video.io import VIDEO_EXTENSIONS, check_backend, video_info
from mmssl.modalities.video.sources import VideoSource

VIDEO_FIELDS: tuple[str, ...] = tuple(ext.lstrip(".") for ext in VIDEO_EXTENSIONS)
NO_LABEL = -1  # pretraining reads no labels, as for a video folder without class sub-folders


def decode_video_record(record: Record, where: str, backend: str = "decord") -> VideoSource:
    """The record's video as a source held in memory (its header read by ``backend``; no frame decoded)."""
    data = record[only_member(record, VIDEO_FIELDS, "video", where)]
    info = video_info(where, backend, data=data)
    return VideoSource(Path(where), NO_LABEL, info.num_frames, info.height, info.width, "file", data)


def video_shard_samples(location: str, backend: str = "decord") -> ShardSamples:
    """The video shard set at ``location`` (a folder with ``shards.json``, or that file)."""
    decode = functools.partial(decode_video_record, backend=check_backend(backend))  # picklable for workers
    return ShardSamples(read_manifest(location, modality="video"), decode)
