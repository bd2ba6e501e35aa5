"""Two gloo processes with gathered negatives match one process on the whole batch (loss and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from mmssl.core import distributed as mdist
from mmssl.crossmodal import CrossModalContrastive
from tests.crossmodal._helpers import TinyTower
from tests.distributed_helpers import free_port, set_rank_environment

WORLD, BATCH = 2, 8


def _method(gather: bool) -> CrossModalContrastive:
    torch.manual_seed(0)
    # No BatchNorm: per-process batch statistics would differ from the single-process ones.
    return CrossModalContrastive(
        TinyTower(6, 5),
        towers={"audio": TinyTower(4, 5)},
        projector_dim=3,
        projector_hidden=7,
        projector_bn=False,
        gather=gather,
    )


def _loss_and_grads(model: nn.Module, batch: dict) -> dict:
    loss = model(batch)["loss"]
    loss.backward()
    return {
        "loss": mdist.all_reduce_mean(loss).item(),
        "grads": {n: p.grad.detach().clone() for n, p in mdist.unwrap_model(model).named_parameters()},
    }


def _worker(rank: int, port: int, path: str, batch: dict) -> None:
    set_rank_environment(rank, WORLD, port)
    mdist.init_distributed()
    try:
        result = _distributed_result(rank, batch)
        if mdist.is_main_process():
            torch.save(result, path)
        # Both ranks are done communicating before either tears the process group down.
        mdist.barrier()
    finally:
        mdist.cleanup_distributed()


def _distributed_result(rank: int, batch: dict) -> dict:
    """Loss and gradients on this rank's half; the DDP wrapper (which holds the process group) is freed
    on return, before the group is destroyed."""
    ddp = nn.parallel.DistributedDataParallel(_method(gather=True))
    half = BATCH // WORLD
    local = {k: v[rank * half : (rank + 1) * half] for k, v in batch.items()}
    return _loss_and_grads(ddp, local)


@pytest.mark.distributed
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(BATCH, 6, generator=g), "audio": torch.randn(BATCH, 4, generator=g)}
    path = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(free_port(), path, batch), nprocs=WORLD, join=True)
    got = torch.load(path, weights_only=True)

    ref = _loss_and_grads(_method(gather=False), batch)
    assert got["loss"] == pytest.approx(ref["loss"], abs=1e-5)
    assert set(got["grads"]) == set(ref["grads"]) and "temperature.log_scale" in ref["grads"]
    for name, grad in ref["grads"].items():
        torch.testing.assert_close(got["grads"][name], grad, atol=1e-5, rtol=1e-5, msg=name)
    # Without the gather each process would see only its own half as negatives: a different loss.
    half = {k: v[: BATCH // WORLD] for k, v in batch.items()}
    assert _method(gather=False)(half)["loss"].item() != pytest.approx(ref["loss"], abs=1e-3)
