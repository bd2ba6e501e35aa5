"""Cross-process losses give the single-process result: loss and DDP-averaged gradients on 2 gloo ranks."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from mmssl.core import distributed as mdist
from mmssl.core.losses import info_nce, multi_view_nt_xent, nt_xent
from tests.distributed_helpers import free_port, set_rank_environment

WORLD = 2
IN_DIM, OUT_DIM, BATCH = 6, 4, 8


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(IN_DIM, OUT_DIM)


def _losses(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, gather: bool) -> dict:
    """Loss value and parameter gradients for nt_xent and info_nce (one forward per loss)."""
    out = {}
    for name, fn in (
        ("nt_xent", lambda a, b: nt_xent(a, b, temperature=0.5, gather=gather)),
        ("info_nce", lambda a, b: info_nce(a, b, temperature=0.2, gather=gather)),
        # a third view made from the two (as a small crop would be another view of the same sample)
        ("multi_view_nt_xent", lambda a, b: multi_view_nt_xent([a, b, a - b], 0.3, gather=gather)),
    ):
        model.zero_grad()
        z1, z2 = model(torch.cat([x1, x2])).chunk(2)  # one DDP forward per backward
        loss = fn(z1, z2)
        loss.backward()
        out[name] = {
            "loss": mdist.all_reduce_mean(loss).item(),
            "grads": [p.grad.detach().clone() for p in model.parameters()],
        }
    return out


def _worker(rank: int, port: int, path: str, x1: torch.Tensor, x2: torch.Tensor) -> None:
    set_rank_environment(rank, WORLD, port)
    device = mdist.init_distributed()
    try:
        assert device.type == "cpu"
        assert mdist.is_distributed() and mdist.get_world_size() == WORLD and mdist.get_rank() == rank
        result = _distributed_result(rank, x1, x2)
        if mdist.is_main_process():
            torch.save(result, path)
        # Both ranks are done communicating before either tears the process group down.
        mdist.barrier()
    finally:
        mdist.cleanup_distributed()


def _distributed_result(rank: int, x1: torch.Tensor, x2: torch.Tensor) -> dict:
    """Losses and gradients on this rank's rows; the DDP wrapper (which holds the process group) is freed
    on return, before the group is destroyed."""
    ddp = nn.parallel.DistributedDataParallel(_model())
    half = BATCH // WORLD
    rows = slice(rank * half, (rank + 1) * half)
    result = _losses(ddp, x1[rows], x2[rows], gather=True)
    # the rank-ordered gather layout: rank r's rows at r*B:(r+1)*B
    result["gathered"] = mdist.gather_with_grad(torch.full((2, 1), float(rank)))
    return result


@pytest.mark.distributed
def test_gathered_losses_match_single_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(BATCH, IN_DIM, generator=g), torch.randn(BATCH, IN_DIM, generator=g)
    path = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(free_port(), path, x1, x2), nprocs=WORLD, join=True)
    got = torch.load(path, weights_only=True)

    ref = _losses(_model(), x1, x2, gather=False)
    for name in ("nt_xent", "info_nce", "multi_view_nt_xent"):
        assert got[name]["loss"] == pytest.approx(ref[name]["loss"], abs=1e-5), name
        for g_ddp, g_ref in zip(got[name]["grads"], ref[name]["grads"]):
            torch.testing.assert_close(g_ddp, g_ref, atol=1e-5, rtol=1e-5)
    assert got["gathered"].flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_single_process_fallbacks(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    device = mdist.init_distributed()
    assert not mdist.is_distributed()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (mdist.get_rank(), mdist.get_world_size(), mdist.is_main_process()) == (0, 1, True)

    x = torch.randn(3, 2, requires_grad=True)
    assert mdist.gather_with_grad(x) is x
    mean = mdist.all_reduce_mean(x)
    assert torch.equal(mean, x.detach()) and mean.data_ptr() != x.data_ptr()
    bn = nn.Sequential(nn.BatchNorm1d(2))
    assert mdist.convert_sync_batchnorm(bn) is bn
    mdist.barrier()
    mdist.cleanup_distributed()
