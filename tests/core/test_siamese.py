"""The generic two-view method and its SimCLR / MoCo (3 negative sources) / BYOL configurations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmssl.core.losses import nt_xent
from mmssl.core.siamese import SiameseMethod, byol, moco, simclr
from mmssl.data import DataBundle
from mmssl.train.config import TrainConfig
from mmssl.train.trainer import Trainer


class VecEncoder(nn.Module):
    out_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x):
        return {"global": self.net(x)}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(0)
        self.centers = torch.randn(n, 8, generator=g) * 2

    def __len__(self) -> int:
        return len(self.centers)

    def __getitem__(self, i):
        c = self.centers[i]
        return {"views": [c + 0.3 * torch.randn(8), c + 0.3 * torch.randn(8)], "index": i}


def _batch(b: int = 12):
    ds = Pairs()
    items = [ds[i] for i in range(b)]
    return {
        "views": [torch.stack([it["views"][k] for it in items]) for k in range(2)],
        "index": torch.arange(b),
    }


def test_simclr_loss_is_nt_xent_of_projections():
    torch.manual_seed(0)
    m = simclr(VecEncoder(), temperature=0.3, projector_hidden=32, projector_dim=8)
    batch = _batch()
    out = m(batch)
    z1 = m.projector(m.encoder(batch["views"][0])["global"])
    z2 = m.projector(m.encoder(batch["views"][1])["global"])
    torch.testing.assert_close(out["loss"], nt_xent(z1, z2, temperature=0.3))


def test_moco_queue_fills_with_keys_and_teacher_follows_ema():
    torch.manual_seed(0)
    m = moco(
        VecEncoder(), negatives="queue", queue_size=24, momentum=0.9, projector_hidden=32, projector_dim=8
    )
    m(_batch(12))
    assert int(m.queue.ptr) == 12
    student = dict(m.encoder.named_parameters())
    before = {k: v.clone() for k, v in m.teacher.module["encoder"].named_parameters()}
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    m.on_train_step_end(1, 10)
    for k, v in m.teacher.module["encoder"].named_parameters():
        torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * student[k])


def test_moco_end_to_end_keys_carry_gradient_and_memory_bank_updates():
    torch.manual_seed(0)
    e2e = moco(VecEncoder(), negatives="batch", projector_hidden=32, projector_dim=8)
    assert e2e.teacher is None and e2e.queue is None
    e2e(_batch())["loss"].backward()
    assert all(p.grad is not None for p in e2e.encoder.parameters())

    bank = moco(
        VecEncoder(),
        DataBundle(pretrain=range(96)),
        negatives="memory_bank",
        num_negatives=32,
        projector_hidden=32,
        projector_dim=8,
    )
    before = bank.bank.features.clone()
    bank(_batch(12))
    changed = (bank.bank.features != before).any(dim=1)
    assert changed[:12].all() and not changed[12:].any()
    torch.testing.assert_close(bank.bank.features.norm(dim=1), torch.ones(96))


def test_shuffled_bn_keys_equal_plain_keys_in_eval_mode():
    torch.manual_seed(0)
    m = moco(VecEncoder(), negatives="queue", shuffle_bn_groups=3, projector_hidden=32, projector_dim=8)
    m.eval()  # BN without batch statistics: grouping must not change any key, only BN's batch
    x = _batch(12)["views"][0]
    grouped = m.keys(x)
    m.shuffle_bn_groups = 1
    torch.testing.assert_close(grouped, m.keys(x))


def test_byol_target_excludes_predictor_and_gets_no_gradient():
    torch.manual_seed(0)
    m = byol(VecEncoder(), projector_hidden=32, projector_dim=8, predictor_hidden=32)
    assert set(m.teacher.module.keys()) == {"encoder", "projector"}
    assert not any(p.requires_grad for p in m.teacher.parameters())
    m(_batch())["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert all(p.grad is not None for p in m.predictor.parameters())


def test_byol_momentum_reaches_one_at_the_end():
    m = byol(VecEncoder(), projector_hidden=32, projector_dim=8, predictor_hidden=32)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.teacher.module["encoder"].parameters()]
    m.on_train_step_end(10, 10)  # tau = 1 at k = K: the target does not move
    for b, p in zip(before, m.teacher.module["encoder"].parameters()):
        torch.testing.assert_close(b, p)


def test_invalid_combinations_are_rejected():
    with pytest.raises(ValueError, match="momentum_encoder"):
        SiameseMethod(VecEncoder(), objective="regression")
    with pytest.raises(ValueError, match="num_samples"):
        SiameseMethod(VecEncoder(), objective="info_nce", negatives="memory_bank")


@pytest.mark.parametrize("name", ["simclr", "moco_queue", "moco_batch", "moco_bank", "byol"])
def test_each_configuration_learns(name, tmp_path):
    torch.manual_seed(0)
    enc = VecEncoder()
    builders = {
        "simclr": lambda: simclr(enc, projector_hidden=32, projector_dim=8),
        "moco_queue": lambda: moco(
            enc, negatives="queue", queue_size=64, projector_hidden=32, projector_dim=8
        ),
        "moco_batch": lambda: moco(enc, negatives="batch", projector_hidden=32, projector_dim=8),
        "moco_bank": lambda: moco(
            enc,
            DataBundle(pretrain=range(96)),
            negatives="memory_bank",
            num_negatives=64,
            projector_hidden=32,
            projector_dim=8,
        ),
        "byol": lambda: byol(enc, projector_hidden=32, projector_dim=8, predictor_hidden=32),
    }
    method = builders[name]()
    cfg = TrainConfig(
        steps=60,
        batch_size=32,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.0,
        ckpt_every=0,
        log_every=10,
        progress=False,
        device="cpu",
    )
    result = Trainer(cfg, method, Pairs(), run_dir=None).fit()
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < first, (name, first, last)
