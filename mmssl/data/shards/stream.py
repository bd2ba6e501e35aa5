"""Streaming pretraining items from a shard set, split over ranks and workers, exactly resumable.

The order, for one reader (data-loader worker ``w`` of ``W`` on rank ``r`` of ``R``; reader ``g = r * W + w``
of ``G = R * W``):

1. epoch ``e`` permutes the shards (seeded by ``seed + e``) and reader ``g`` takes every ``G``-th one from
   position ``g``: within an epoch each shard goes to exactly one reader, so readers neither overlap nor
   drop samples (a set needs at least ``G`` shards);
2. the reader's records, in that shard order, are cut into blocks of ``shuffle_buffer`` and each block is
   permuted (seeded by ``seed``, ``e``, ``g`` and the block number). This is a *block* shuffle, not
   webdataset's rolling reservoir: a reservoir's state at any point depends on every earlier sample, a
   block's only on itself, which is what lets a resumed run skip to any position by reading at most one
   shard and one block. ``make_shards.py`` shuffles samples across shards when it writes them, so a block
   mixes classes;
3. the stream is endless: epoch ``e + 1`` follows ``e`` in each reader, as the map-style sampler does.

Each item is made exactly as :class:`~mmssl.train.data.SeededDataset` makes it: under a torch seed drawn
from ``(seed, e, index)``, ``index`` being the sample's global number in the manifest, which is also its
``index`` batch key.

Resume: the DataLoader takes batches from its workers in turn (worker ``b % W`` makes a rank's batch ``b``),
so after ``K`` batches worker ``w`` has made ``ceil((K - w) / W)`` of them; :meth:`ShardStream.configure`
with ``start_batches=K`` makes every worker skip exactly its share, the new loader's worker ``j``
continuing the stream of the old worker ``(j + K) % W`` (a new loader starts its turns at worker 0). The
resumed order equals the uninterrupted one when ``R``, ``W`` and the batch size are the same (the trainer
checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from mmssl.data.seeded import SeededDataset, sample_seed
from mmssl.data.shards.manifest import ShardManifest
from mmssl.data.shards.reader import Record, iter_records
from mmssl.errors import DataError

Decode = Callable[[Record, str], Any]


class ShardSamples(Dataset):
    """The shard set as a map-style dataset for item wrappers: ``samples[i] = decode(record_i, where)``.

    Only the records of the block being streamed are held (:meth:`hold`); asking for another index is a
    programming error, named as such. ``where`` is ``"<shard path>:<key>"`` for the decoder's error messages.
    """

    def __init__(self, manifest: ShardManifest, decode: Decode) -> None:
        self.manifest = manifest
        self.decode = decode
        self._held: dict[int, tuple[str, Record]] = {}

    def __len__(self) -> int:
        return self.manifest.num_samples

    def hold(self, records: dict[int, tuple[str, Record]]) -> None:
        self._held = records

    def __getitem__(self, index: int) -> Any:
        try:
            where, record = self._held[index]
        except KeyError:
            raise RuntimeError(
                f"sample {index} of {self.manifest.root} is not in the block being streamed: shard samples "
                "are read through ShardStream, not by index"
            ) from None
        return self.decode(record, where)


def worker_share(batches: int, worker: int, workers: int) -> int:
    """How many of a rank's first ``batches`` batches worker ``worker`` of ``workers`` made (in turn)."""
    return max(0, -(-(batches - worker) // workers))


class ShardStream(IterableDataset):
    """Endless pretraining items (``items[i]`` for the streamed samples) in the order of the module docstring.

    ``items`` wraps ``samples`` (e.g. two-view items over decoded images): any map-style item dataset whose
    ``items[i]`` reads ``samples[i]``. Call :meth:`configure` before iterating (the trainer does).
    """

    def __init__(
        self,
        items: Dataset,
        samples: ShardSamples,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        shuffle: bool = True,
    ) -> None:
        if shuffle_buffer < 1:
            raise DataError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
        self.items, self.samples = items, samples
        self.manifest = samples.manifest
        self.seed, self.shuffle_buffer, self.shuffle = seed, shuffle_buffer, shuffle
        self.rank, self.world_size, self.batch_size, self.start_batches = 0, 1, 1, 0

    def configure(self, *, rank: int, world_size: int, batch_size: int, start_batches: int = 0) -> None:
        """Which rank reads, in batches of what size, and how many of its batches were already consumed."""
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.start_batches = start_batches

    def __len__(self) -> int:
        return self.manifest.num_samples

    # ------------------------------------------------------------------ order
    def epoch_shards(self, epoch: int, reader: int, readers: int) -> list[int]:
        """Indices (into the manifest) of the shards reader ``reader`` of ``readers`` reads in ``epoch``."""
        count = len(self.manifest.shards)
        if readers > count:
            raise DataError(
                f"{self.manifest.root} has {count} shards, fewer than the {readers} readers "
                "(processes x data-loader workers) that split them: write more, smaller shards "
                "(make_shards.py --max-samples) or use fewer workers"
            )
        if self.shuffle:
            order = torch.randperm(count, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(count))
        return order[reader::readers]

    def _block_order(self, size: int, epoch: int, reader: int, block: int) -> list[int]:
        if not self.shuffle:
            return list(range(size))
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, reader * 1_000_003 + block))
        return torch.randperm(size, generator=g).tolist()

    def _epoch_records(self, shards: list[int], skip: int) -> Iterator[tuple[int, str, Record]]:
        """``(global index, where, record)`` of ``shards`` in order, less the first ``skip`` (whole shards
        are skipped without being opened)."""
        offsets = self.manifest.offsets
        for s in shards:
            info = self.manifest.shards[s]
            if skip >= info.samples:
                skip -= info.samples
                continue
            path = self.manifest.path(info)
            for position, record in enumerate(iter_records(path, expected=info.samples)):
                if position >= skip:
                    yield offsets[s] + position, f"{path}:{record['__key__']}", record
            skip = 0

    def reader_stream(self, reader: int, readers: int, skip: int = 0) -> Iterator[tuple[int, int]]:
        """Endless ``(global index, epoch)`` keys of one reader from position ``skip``, holding each block's
        records in :attr:`samples` while its keys are out."""
        seeded_epoch = 0
        while True:
            shards = self.epoch_shards(seeded_epoch, reader, readers)
            in_epoch = sum(self.manifest.shards[s].samples for s in shards)
            if skip >= in_epoch:
                skip -= in_epoch
                seeded_epoch += 1
                continue
            first_block = skip // self.shuffle_buffer
            within = skip - first_block * self.shuffle_buffer
            records = self._epoch_records(shards, first_block * self.shuffle_buffer)
            block = first_block
            while True:
                held: dict[int, tuple[str, Record]] = {}
                keys: list[int] = []
                for index, where, record in records:
                    held[index] = (where, record)
                    keys.append(index)
                    if len(keys) == self.shuffle_buffer:
                        break
                if not keys:
                    break
                self.samples.hold(held)
                order = self._block_order(len(keys), seeded_epoch, reader, block)
                for j in order[within:]:
                    yield keys[j], seeded_epoch
                within, block = 0, block + 1
            skip = 0
            seeded_epoch += 1

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # A new DataLoader starts its turns at worker 0, but batch K belongs to the reader that made
        # batches K % W before: rotate, so that this worker continues that reader's stream.
        worker = (worker + self.start_batches) % workers
        reader, readers = self.rank * workers + worker, self.world_size * workers
        skip = worker_share(self.start_batches, worker, workers) * self.batch_size
        seeded = SeededDataset(self.items, self.seed)
        for key in self.reader_stream(reader, readers, skip):
            yield seeded[key]
