"""``train.strategy: fsdp`` on CPU with gloo: FSDP2 sharding of the transformer blocks, the same training as
DDP, sharded (torch.distributed.checkpoint) checkpoints and an exact resume from them."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from mmssl.core import distributed as mdist
from mmssl.core.method import Method
from mmssl.core.transformer import Block
from mmssl.train.config import TrainConfig
from mmssl.train.fsdp import META_NAME, SHARDED_NAME, load_sharded, save_sharded, shard_units
from mmssl.train.optim import LARS, build_optimizer
from mmssl.train.trainer import Trainer
from tests.distributed_helpers import free_port, set_rank_environment

WORLD = 2


class NoisyTokens(Dataset):
    """Two noisy views of fixed random token sets ``[4, 8]``; the noise comes from torch's RNG."""

    def __init__(self, n: int = 64) -> None:
        self.x = torch.randn(n, 4, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return {
            "views": [self.x[i] + 0.1 * torch.randn(4, 8), self.x[i] + 0.1 * torch.randn(4, 8)],
            "index": i,
        }


class TinyTransformerMethod(Method):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(8, 16)
        self.blocks = nn.Sequential(Block(16, 2), Block(16, 2))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.embed(x)).mean(dim=1)

    def forward(self, batch):
        a, b = (self.encode(v) for v in batch["views"])
        return {"loss": (a - b).pow(2).mean() + 0.01 * a.pow(2).mean()}


def _cfg(strategy: str, **kw) -> TrainConfig:
    base = dict(
        steps=6,
        batch_size=4,
        optimizer="adamw",
        lr=1e-2,
        accumulate=2,
        ckpt_every=2,
        log_every=1,
        progress=False,
        device="cpu",
        strategy=strategy,
    )
    return TrainConfig(**{**base, **kw})


class Killed(Exception):
    pass


def _die_during_step_5(step: int, total: int) -> None:  # after step 4's checkpoint
    if step == 5:
        raise Killed


def _worker(rank: int, port: int, folder: str) -> None:
    set_rank_environment(rank, WORLD, port)
    mdist.init_distributed()
    try:
        out = {}
        for name, strategy in (("ddp", "ddp"), ("fsdp", "fsdp")):
            trainer = Trainer(
                _cfg(strategy), TinyTransformerMethod(), NoisyTokens(), run_dir=f"{folder}/{name}"
            )
            trainer.fit()
            if name == "fsdp":
                # The rank's own shards, read before the trainer handed back the gathered module.
                params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
                out["local_numel"] = sum(p.to_local().numel() for p in params)
            if rank == 0:
                out[name] = {k: v.detach().clone() for k, v in trainer.method.state_dict().items()}
        part = TinyTransformerMethod()
        part.on_train_step_end = _die_during_step_5
        try:
            Trainer(_cfg("fsdp"), part, NoisyTokens(), run_dir=f"{folder}/killed").fit()
        except Killed:
            pass
        mdist.barrier()
        resumed = Trainer(
            _cfg("fsdp"), TinyTransformerMethod(), NoisyTokens(), run_dir=f"{folder}/killed", resume="auto"
        )
        resumed.fit()
        if rank == 0:
            out["resumed"] = {k: v.detach().clone() for k, v in resumed.method.state_dict().items()}
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
        mdist.barrier()
    finally:
        mdist.cleanup_distributed()


@pytest.mark.distributed
def test_fsdp_trains_as_ddp_and_resumes_exactly_from_sharded_checkpoints(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    ddp, fsdp, resumed = ranks[0]["ddp"], ranks[0]["fsdp"], ranks[0]["resumed"]
    initial = TinyTransformerMethod().state_dict()
    assert ddp.keys() == fsdp.keys() == initial.keys()
    for key in ddp:
        assert not torch.equal(fsdp[key], initial[key]), key  # trained
        torch.testing.assert_close(resumed[key], fsdp[key], rtol=0, atol=0)  # exact resume
        got, want = fsdp[key], ddp[key]
        if key.endswith("attn.qkv.bias"):
            # The key bias shifts every score of a query by the same amount, which softmax ignores: its
            # true gradient is 0 and only rounding noise (which differs between an all-reduce and a
            # reduce-scatter) moves it. Compare the query and value biases.
            got, want = torch.cat([got[:16], got[32:]]), torch.cat([want[:16], want[32:]])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # the same optimisation as DDP
    # Each rank held about half of every parameter (dim-0 shards of the gathered tensors).
    total = sum(v.numel() for v in initial.values())
    assert [r["local_numel"] for r in ranks] == pytest.approx([total / 2] * 2, rel=0.05)

    sharded = tmp_path / "killed" / "checkpoints" / SHARDED_NAME
    assert (sharded / META_NAME).is_file() and (sharded / ".metadata").is_file()
    assert len(list(sharded.glob("*.distcp"))) == WORLD  # one file of shards per rank
    assert not list((tmp_path / "killed" / "checkpoints").glob(".*"))  # no half-written folder left

    # A DCP folder written by two ranks loads into one unsharded process, e.g. to evaluate or export.
    method = TinyTransformerMethod()
    optimizer = build_optimizer(method, _cfg("ddp"))
    meta = load_sharded(sharded, method, optimizer)
    assert meta["step"] == 6 and meta["data_position"]["epoch"] >= 0
    for key, value in method.state_dict().items():
        torch.testing.assert_close(value, resumed[key], rtol=0, atol=0)


def test_shard_units_are_the_transformer_blocks():
    method = TinyTransformerMethod()
    assert shard_units(method) == list(method.blocks)


def test_shard_units_follow_hugging_face_no_split_modules():
    class Layer(nn.Module):
        pass

    class HFLike(nn.Module):
        _no_split_modules = ["Layer"]

        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([Layer(), Layer()])

    model = HFLike()
    assert shard_units(nn.Sequential(model)) == list(model.layers)


def test_one_process_fsdp_run_keeps_sharded_checkpoints_and_resumes(tmp_path):
    # Without torchrun there is nothing to shard over; the checkpoint format still follows the strategy.
    straight = Trainer(_cfg("fsdp"), TinyTransformerMethod(), NoisyTokens(), run_dir=tmp_path / "s")
    straight.fit()
    part = TinyTransformerMethod()
    part.on_train_step_end = _die_during_step_5
    with pytest.raises(Killed):
        Trainer(_cfg("fsdp"), part, NoisyTokens(), run_dir=tmp_path / "p").fit()
    assert (tmp_path / "p" / "checkpoints" / SHARDED_NAME / META_NAME).is_file()
    resumed = Trainer(
        _cfg("fsdp"), TinyTransformerMethod(), NoisyTokens(), run_dir=tmp_path / "p", resume="auto"
    )
    resumed.fit()
    for key, value in straight.method.state_dict().items():
        torch.testing.assert_close(resumed.method.state_dict()[key], value, rtol=0, atol=0)
    evaluated = TinyTransformerMethod()  # model only, as `mmssl eval ckpt=.../last_sharded` loads it
    assert load_sharded(tmp_path / "p" / "checkpoints" / SHARDED_NAME, evaluated)["step"] == 6
    for key, value in straight.method.state_dict().items():
        torch.testing.assert_close(evaluated.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="sharded checkpoint folder"):
        last_pt = tmp_path / "last.pt"
        last_pt.write_bytes(b"")
        Trainer(_cfg("fsdp"), TinyTransformerMethod(), NoisyTokens(), resume=str(last_pt)).fit()


def test_sharded_checkpoint_from_before_an_optimizer_option_loads(tmp_path):
    """A LARS state written before ``clip`` existed: DCP would miss the key; it loads as unclipped."""
    written = TinyTransformerMethod()
    old = LARS(written.parameters(), lr=0.1, eta=0.02)
    sample = NoisyTokens(2)[0]
    written({"views": [v[None] for v in sample["views"]]})["loss"].backward()
    old.step()
    for group in old.param_groups:
        del group["clip"]  # as the optimizer was before the option
    save_sharded(tmp_path, written, old, {"step": 1})
    loaded = TinyTransformerMethod()
    new = LARS(loaded.parameters(), lr=0.1, clip=True)
    assert load_sharded(tmp_path / SHARDED_NAME, loaded, new)["step"] == 1
    assert [g["clip"] for g in new.param_groups] == [False]
    for key, value in written.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(
        [new.state[p]["momentum_buffer"] for p in loaded.parameters()],
        [old.state[p]["momentum_buffer"] for p in written.parameters()],
    )
