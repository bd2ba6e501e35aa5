"""Deterministic, resumable data order.

Two pieces make a run reproducible and resumable at any step, with any number of workers:

* :class:`ResumableSampler` yields ``(index, epoch)`` keys from a seeded per-epoch permutation,
  sharded across processes, endlessly; it can start at any ``(epoch, offset)``.
* :class:`SeededDataset` seeds torch's RNG from ``(seed, epoch, index)`` around each item, so a
  sample's random augmentation depends only on those three numbers — not on worker count, worker
  order, or what ran before a resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that differs for every (seed, epoch, index)."""
    x = (seed * 1_000_003 + epoch) * 2_654_435_761 + index * 40_503
    x ^= x >> 29
    return (x * 0x9E3779B97F4A7C15) % (2**63 - 1)


class SeededDataset(Dataset):
    """Wraps a dataset so item ``(index, epoch)`` is produced under a fixed torch seed."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        # Seed only the CPU generator and restore it afterwards. (``torch.manual_seed`` would also
        # reseed CUDA generators, and ``fork_rng`` is ~100x slower per call on a CPU process.)
        gen = torch.default_generator
        state = gen.get_state()
        gen.manual_seed(sample_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            gen.set_state(state)


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
