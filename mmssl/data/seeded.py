"""Per-sample seeding: an item's random augmentation depends only on ``(seed, epoch, index)``.

Shared by the map-style order (:class:`~mmssl.train.data.ResumableSampler` keys) and the shard stream
(:class:`~mmssl.data.shards.ShardStream`), so both make an item the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


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
