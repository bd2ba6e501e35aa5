"""Frozen features extracted a part per rank (``split_over_ranks``) equal the one-process extraction."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from mmssl.core import distributed as mdist
from mmssl.eval.features import extract_features
from tests.distributed_helpers import free_port, set_rank_environment

WORLD = 2


class Labelled(Dataset):
    def __init__(self, n: int = 11) -> None:  # odd: the ranks' parts differ in length
        self.x = torch.randn(n, 5, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return {"input": self.x[i], "label": i % 3}


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU())

    def forward(self, x):
        return {"global": self.net(x)}


def _worker(rank: int, port: int, folder: str) -> None:
    set_rank_environment(rank, WORLD, port)
    mdist.init_distributed()
    try:
        encoder = Encoder()
        if rank == 1:  # as after DDP training: BatchNorm statistics differ between the ranks
            encoder.net[1].running_mean += 1.0
        differs = extract_features(encoder, Labelled(), batch_size=4, split_over_ranks=True)[0]
        mdist.broadcast_state(encoder)  # what the runner does before the ranks evaluate together
        feats, labels = extract_features(encoder, Labelled(), batch_size=4, split_over_ranks=True)
        torch.save(
            {"feats": feats, "labels": labels, "differs": differs}, os.path.join(folder, f"rank{rank}.pt")
        )
        mdist.barrier()
    finally:
        mdist.cleanup_distributed()


@pytest.mark.distributed
def test_every_rank_gets_the_whole_in_dataset_order(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    want_feats, want_labels = extract_features(Encoder(), Labelled(), batch_size=4)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["feats"], want_feats)
        assert torch.equal(got["labels"], want_labels)
        # Without the broadcast, rank 1's rows came from its own statistics: not rank 0's encoder.
        assert not torch.allclose(got["differs"], want_feats)


def test_without_a_process_group_the_flag_changes_nothing():
    a = extract_features(Encoder(), Labelled(), split_over_ranks=True)
    b = extract_features(Encoder(), Labelled())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
