"""Gradient accumulation under DDP: gradients are all-reduced once per optimizer step (``no_sync`` on the
other micro-steps), counted with a DDP communication hook, and the ranks stay identical."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

import mmssl.train.trainer as trainer_module
from mmssl.core import distributed as mdist
from tests.distributed_helpers import free_port, set_rank_environment
from tests.train.test_trainer import NoisyPairs, TinyMethod, _cfg

WORLD, STEPS, ACCUMULATE = 2, 3, 4


class CountingDDP(DistributedDataParallel):
    """DDP whose gradient all-reduces (one per bucket and synchronised backward) are counted."""

    reductions = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)

        def hook(state, bucket):
            CountingDDP.reductions += 1
            return allreduce_hook(state, bucket)

        self.register_comm_hook(None, hook)


def _worker(rank: int, port: int, folder: str) -> None:
    set_rank_environment(rank, WORLD, port)
    trainer_module.DistributedDataParallel = CountingDDP  # this spawned process only
    mdist.init_distributed()
    try:
        method = TinyMethod()
        cfg = _cfg(steps=STEPS, accumulate=ACCUMULATE, batch_size=4, ckpt_every=0)
        trainer_module.Trainer(cfg, method, NoisyPairs(), run_dir=None).fit()
        torch.save(
            {"reductions": CountingDDP.reductions, "weight": method.encoder.weight.detach().clone()},
            os.path.join(folder, f"rank{rank}.pt"),
        )
        mdist.barrier()
    finally:
        mdist.cleanup_distributed()


@pytest.mark.distributed
def test_gradients_are_reduced_once_per_optimizer_step(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # TinyMethod's parameters fit one bucket: one reduction per step, not one per micro-step.
    assert [r["reductions"] for r in ranks] == [STEPS] * WORLD
    torch.testing.assert_close(ranks[0]["weight"], ranks[1]["weight"])
    assert not torch.equal(ranks[0]["weight"], TinyMethod().encoder.weight.detach())


def test_trainer_wraps_in_the_module_level_ddp_class():
    # The test above counts through this name; a trainer that built DDP another way would go uncounted.
    assert trainer_module.DistributedDataParallel is nn.parallel.DistributedDataParallel
