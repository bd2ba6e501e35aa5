"""Deterministic, resumable data order.

Two pieces make a run reproducible and resumable at any step, with any number of workers:

* :class:`ResumableSampler` yields ``(index, epoch)`` keys from a seeded per-epoch permutation,
  sharded across processes, endlessly; it can start at any ``(epoch, offset)``.
* :class:`~mmssl.data.seeded.SeededDataset` seeds torch's RNG from ``(seed, epoch, index)`` around each
  item, so a sample's random augmentation depends only on those three numbers — not on worker count, worker
  order, or what ran before a resume.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    """Endless, seeded, sharded sampler that can start mid-epoch.

    Each epoch is ``randperm(n)`` (seeded by ``seed + epoch``), cut to a multiple of
    ``world_size * batch_size`` (the incomplete last batch is dropped, as ``drop_last``), and shard
    ``rank::world_size``. A rank therefore sees ``per_epoch`` samples per epoch.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start_epoch: int = 0,
        start_offset: int = 0,
    ) -> None:
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise ValueError(
                f"dataset has {num_samples} samples, fewer than one global batch of {global_batch} "
                f"(train.batch_size={batch_size} x {world_size} processes)"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.per_epoch = (num_samples // global_batch) * batch_size
        self.start_epoch = start_epoch
        self.start_offset = start_offset

    def position(self, samples_consumed: int) -> tuple[int, int]:
        """(epoch, offset) after this rank consumed ``samples_consumed`` samples from the start."""
        return samples_consumed // self.per_epoch, samples_consumed % self.per_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = self.start_epoch, self.start_offset
        usable = self.per_epoch * self.world_size
        while True:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed + epoch)
                order = torch.randperm(self.num_samples, generator=g)[:usable]
            else:
                order = torch.arange(usable)
            for index in order[self.rank :: self.world_size][offset:].tolist():
                yield index, epoch
            epoch, offset = epoch + 1, 0
