"""Sharded data: WebDataset tar shards written by ``data_tools/make_shards.py`` and streamed to the trainer.

- :mod:`~mmssl.data.shards.manifest`: ``shards.json`` (which shards, how many samples each);
- :mod:`~mmssl.data.shards.reader`: the records of one shard (raw bytes per member, names checked);
- :mod:`~mmssl.data.shards.writer`: records into shards of a target size, verified by reading back;
- :mod:`~mmssl.data.shards.stream`: rank/worker split, block shuffle, exact resume.

Modality-free: a modality supplies the ``decode(record, where)`` that turns a record into its base item.
"""

from mmssl.data.shards.manifest import ShardInfo, ShardManifest, read_manifest
from mmssl.data.shards.reader import Record, iter_records, only_member
from mmssl.data.shards.stream import ShardSamples, ShardStream, worker_share
from mmssl.data.shards.writer import ShardSetWriter

__all__ = [
    "Record",
    "ShardInfo",
    "ShardManifest",
    "ShardSamples",
    "ShardSetWriter",
    "ShardStream",
    "iter_records",
    "only_member",
    "read_manifest",
    "worker_share",
]
