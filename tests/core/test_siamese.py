"""The two-view methods: SimCLR, MoCo (3 negative sources) and BYOL."""

from __future__ import annotations

import pytest
import torch

from mmssl.core.losses import nt_xent
from mmssl.core.methods.byol import BYOL
from mmssl.core.methods.moco import MoCo
from mmssl.core.methods.simclr import SimCLR
from mmssl.data import DataBundle
from mmssl.train.config import TrainConfig
from mmssl.train.trainer import Trainer
from tests.core.two_view_helpers import Pairs, VecEncoder, two_view_batch


def test_simclr_loss_is_nt_xent_of_projections():
    torch.manual_seed(0)
    m = SimCLR(VecEncoder(), temperature=0.3, projector_hidden=32, projector_dim=8)
    batch = two_view_batch()
    out = m(batch)
    z1 = m.projector(m.encoder(batch["views"][0])["global"])
    z2 = m.projector(m.encoder(batch["views"][1])["global"])
    torch.testing.assert_close(out["loss"], nt_xent(z1, z2, temperature=0.3))


def test_moco_queue_fills_with_keys_and_teacher_follows_ema():
    torch.manual_seed(0)
    m = MoCo(
        VecEncoder(), negatives="queue", queue_size=24, momentum=0.9, projector_hidden=32, projector_dim=8
    )
    m(two_view_batch(12))
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
    e2e = MoCo(VecEncoder(), negatives="batch", projector_hidden=32, projector_dim=8)
    assert e2e.teacher is None and not hasattr(e2e, "queue")
    e2e(two_view_batch())["loss"].backward()
    assert all(p.grad is not None for p in e2e.encoder.parameters())

    bank = MoCo(
        VecEncoder(),
        DataBundle(pretrain=range(96)),
        negatives="memory_bank",
        num_negatives=32,
        projector_hidden=32,
        projector_dim=8,
    )
    before = bank.bank.features.clone()
    bank(two_view_batch(12))
    changed = (bank.bank.features != before).any(dim=1)
    assert changed[:12].all() and not changed[12:].any()
    torch.testing.assert_close(bank.bank.features.norm(dim=1), torch.ones(96))


def test_shuffled_bn_keys_equal_plain_keys_in_eval_mode():
    torch.manual_seed(0)
    m = MoCo(VecEncoder(), negatives="queue", shuffle_bn_groups=3, projector_hidden=32, projector_dim=8)
    m.eval()  # BN without batch statistics: grouping must not change any key, only BN's batch
    x = two_view_batch(12)["views"][0]
    grouped = m.teacher(x)
    m.teacher.shuffle_bn_groups = 1
    torch.testing.assert_close(grouped, m.teacher(x))


def test_byol_target_excludes_predictor_and_gets_no_gradient():
    torch.manual_seed(0)
    m = BYOL(VecEncoder(), projector_hidden=32, projector_dim=8, predictor_hidden=32)
    assert set(m.teacher.module.keys()) == {"encoder", "projector"}
    assert not any(p.requires_grad for p in m.teacher.parameters())
    m(two_view_batch())["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert all(p.grad is not None for p in m.predictor.parameters())


def test_byol_momentum_reaches_one_at_the_end():
    m = BYOL(VecEncoder(), projector_hidden=32, projector_dim=8, predictor_hidden=32)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.teacher.module["encoder"].parameters()]
    m.on_train_step_end(10, 10)  # tau = 1 at k = K: the target does not move
    for b, p in zip(before, m.teacher.module["encoder"].parameters()):
        torch.testing.assert_close(b, p)


def test_invalid_combinations_are_rejected():
    # (A regression objective without a target network can no longer be built: BYOL always has one.)
    with pytest.raises(ValueError, match="negatives must be one of"):
        MoCo(VecEncoder(), negatives="bank")
    with pytest.raises(ValueError, match="num_samples"):
        MoCo(VecEncoder(), negatives="memory_bank")


@pytest.mark.parametrize("name", ["simclr", "moco_queue", "moco_batch", "moco_bank", "byol"])
def test_each_configuration_learns(name, tmp_path):
    torch.manual_seed(0)
    enc = VecEncoder()
    builders = {
        "simclr": lambda: SimCLR(enc, projector_hidden=32, projector_dim=8),
        "moco_queue": lambda: MoCo(
            enc, negatives="queue", queue_size=64, projector_hidden=32, projector_dim=8
        ),
        "moco_batch": lambda: MoCo(enc, negatives="batch", projector_hidden=32, projector_dim=8),
        "moco_bank": lambda: MoCo(
            enc,
            DataBundle(pretrain=range(96)),
            negatives="memory_bank",
            num_negatives=64,
            projector_hidden=32,
            projector_dim=8,
        ),
        "byol": lambda: BYOL(enc, projector_hidden=32, projector_dim=8, predictor_hidden=32),
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
