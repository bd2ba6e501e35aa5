"""The one trainer: determinism, accumulation, NaN handling, schedules, LARS."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mmssl.core.method import Method
from mmssl.data.seeded import SeededDataset
from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.config import TrainConfig
from mmssl.train.data import ResumableSampler
from mmssl.train.optim import LARS, build_optimizer, lr_factor
from mmssl.train.trainer import NonFiniteLossError, Trainer


class NoisyPairs(Dataset):
    """Two noisy views of fixed random vectors; the noise comes from torch's RNG."""

    def __init__(self, n: int = 64, dim: int = 8) -> None:
        self.x = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return {"views": [self.x[i] + 0.1 * torch.randn(8), self.x[i] + 0.1 * torch.randn(8)], "index": i}


class TinyMethod(Method):
    def __init__(self, nan_at_call: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(8, 4)
        self.calls = 0
        self.nan_at_call = nan_at_call

    def forward(self, batch):
        self.calls += 1
        a, b = (self.encoder(v) for v in batch["views"])
        loss = (a - b).pow(2).mean() + 0.01 * a.pow(2).mean()
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            loss = loss * float("nan")
        return {"loss": loss, "feat_norm": a.norm(dim=1).mean()}


def _cfg(**kw) -> TrainConfig:
    base = dict(
        steps=6,
        batch_size=8,
        optimizer="sgd",
        lr=0.1,
        warmup_steps=2,
        ckpt_every=2,
        log_every=1,
        progress=False,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_same_seed_same_weights(tmp_path):
    w = []
    for run in ("a", "b"):
        m = TinyMethod()
        Trainer(_cfg(), m, NoisyPairs(), run_dir=tmp_path / run).fit()
        w.append(m.encoder.weight.detach().clone())
    assert torch.equal(w[0], w[1])


def test_resume_from_checkpoint_matches_straight_run(tmp_path):
    straight = TinyMethod()
    Trainer(_cfg(steps=6), straight, NoisyPairs(), run_dir=tmp_path / "s").fit()

    class Killed(Exception):
        pass

    def die_during_step_5(step, total):  # after step 4's checkpoint, before step 5's
        if step == 5:
            raise Killed

    part = TinyMethod()
    part.on_train_step_end = die_during_step_5
    with pytest.raises(Killed):
        Trainer(_cfg(steps=6), part, NoisyPairs(), run_dir=tmp_path / "p").fit()
    assert load_checkpoint(tmp_path / "p" / "checkpoints" / "last.pt")["step"] == 4
    resumed = TinyMethod()
    Trainer(_cfg(steps=6), resumed, NoisyPairs(), run_dir=tmp_path / "p", resume="auto").fit()
    assert torch.equal(resumed.encoder.weight, straight.encoder.weight)
    assert torch.equal(resumed.encoder.bias, straight.encoder.bias)


def test_accumulation_matches_large_batch(tmp_path):
    big, small = TinyMethod(), TinyMethod()
    Trainer(_cfg(batch_size=16, steps=3), big, NoisyPairs(), run_dir=None).fit()
    # Same samples: batches of 8 x 2 micro-steps visit the same indices as one batch of 16? Only when
    # the per-epoch order is the same, which holds since the sampler's permutation is by seed only.
    Trainer(_cfg(batch_size=8, accumulate=2, steps=3), small, NoisyPairs(), run_dir=None).fit()
    torch.testing.assert_close(big.encoder.weight, small.encoder.weight, atol=1e-6, rtol=1e-5)


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    # max_nonfinite_steps=0: the first non-finite loss stops the run (skipping: tests/train/test_nonfinite.py)
    m = TinyMethod(nan_at_call=5)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5.*last good checkpoint kept"):
        Trainer(_cfg(steps=10, ckpt_every=2, max_nonfinite_steps=0), m, NoisyPairs(), run_dir=tmp_path).fit()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_logs_metrics_jsonl(tmp_path):
    Trainer(_cfg(steps=4), TinyMethod(), NoisyPairs(), run_dir=tmp_path).fit()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert '"feat_norm"' in lines[0] and '"lr"' in lines[0] and '"samples_per_s"' in lines[0]


def test_sampler_shards_are_disjoint_and_resumable():
    s0 = ResumableSampler(20, batch_size=3, seed=1, rank=0, world_size=2)
    s1 = ResumableSampler(20, batch_size=3, seed=1, rank=1, world_size=2)
    assert s0.per_epoch == 9  # 20 // 6 * 3
    it0, it1 = iter(s0), iter(s1)
    e0 = [next(it0) for _ in range(9)]
    e1 = [next(it1) for _ in range(9)]
    assert not {i for i, _ in e0} & {i for i, _ in e1}
    nxt = [next(it0) for _ in range(5)]
    assert all(epoch == 1 for _, epoch in nxt)
    late = ResumableSampler(20, batch_size=3, seed=1, rank=0, world_size=2, start_epoch=1, start_offset=2)
    assert [next(iter(late)) for _ in range(1)][0] == nxt[2]


def test_seeded_dataset_is_independent_of_global_rng():
    ds = SeededDataset(NoisyPairs(), seed=3)
    torch.manual_seed(0)
    a = ds[(5, 2)]["views"][0]
    torch.manual_seed(123)
    b = ds[(5, 2)]["views"][0]
    c = ds[(5, 3)]["views"][0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_lars_step_matches_formula():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3))
    g = torch.randn(5, 3)
    w.grad = g.clone()
    w0 = w.detach().clone()
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.01, eta=0.001)
    opt.step()
    g_ = g + 0.01 * w0
    trust = 0.001 * w0.norm() / g_.norm()
    torch.testing.assert_close(w.detach(), w0 - 0.5 * trust * g_)
    assert math.isfinite(float(w.detach().sum()))


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_multi_tensor_steps_match_the_formula_tensor_by_tensor(nesterov):
    """Three steps over tensors of several shapes, one all zero (trust 1 while ||w|| = 0), one without a
    gradient (left alone, no state) and an unadapted group (plain momentum SGD), against the formula
    applied to each tensor on its own."""
    torch.manual_seed(0)
    adapted = [nn.Parameter(torch.randn(shape)) for shape in [(4, 3), (7,), (2, 3, 2)]]
    adapted.append(nn.Parameter(torch.zeros(5)))
    plain, idle = [nn.Parameter(torch.randn(3))], nn.Parameter(torch.randn(2))
    lr, momentum, wd, eta = 0.5, 0.9, 0.01, 0.002
    groups = [{"params": adapted + [idle]}, {"params": plain, "weight_decay": 0.0, "lars_adapt": False}]
    opt = LARS(groups, lr=lr, momentum=momentum, weight_decay=wd, eta=eta, nesterov=nesterov)
    weights = [p.detach().clone() for p in adapted + plain]
    velocities: list[torch.Tensor | None] = [None] * len(weights)
    idle_before = idle.detach().clone()
    for _ in range(3):
        grads = [torch.randn(p.shape) for p in adapted + plain]
        for p, g in zip(adapted + plain, grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            w = weights[i]
            if i < len(adapted):
                g = g + wd * w
                g = g * (eta * w.norm() / g.norm() if w.norm() > 0 else 1.0)
            velocities[i] = g if velocities[i] is None else momentum * velocities[i] + g
            weights[i] = w - lr * (g + momentum * velocities[i] if nesterov else velocities[i])
    for p, w in zip(adapted + plain, weights):
        torch.testing.assert_close(p.detach(), w)
    assert torch.equal(idle.detach(), idle_before) and idle not in opt.state


@pytest.mark.parametrize("lr", [0.5, 1e-4])
def test_lars_clip_caps_the_layer_rate_at_lr(lr):
    """LARC clipping: the layer moves by min(eta ||w|| / ||g'||, lr) * g' (solo-learn's clip_lars_lr)."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3))
    g = torch.randn(5, 3)
    w.grad = g.clone()
    w0 = w.detach().clone()
    LARS([w], lr=lr, momentum=0.9, weight_decay=0.01, eta=0.02, clip=True).step()
    g_ = g + 0.01 * w0
    layer_rate = 0.02 * float(w0.norm() / g_.norm())
    assert (layer_rate < lr) == (lr == 0.5)  # one case of each branch of the min
    torch.testing.assert_close(w.detach(), w0 - min(layer_rate, lr) * g_)


def test_lars_clip_at_lr_zero_is_the_limit_of_small_lr():
    """At the end of a cosine schedule lr reaches 0: the cap binds, so the momentum buffer takes g' itself."""
    buffers = []
    for lr in (0.0, 1e-30):
        w = nn.Parameter(torch.ones(3))
        w.grad = torch.tensor([1.0, 2.0, 3.0])
        opt = LARS([w], lr=lr, momentum=0.9, eta=0.02, clip=True)
        opt.step()
        buffers.append(opt.state[w]["momentum_buffer"])
    torch.testing.assert_close(buffers[0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(buffers[0], buffers[1])


def test_lars_loads_an_optimizer_state_saved_before_clip_existed():
    w = nn.Parameter(torch.ones(3))
    state = LARS([w], lr=0.1).state_dict()
    for group in state["param_groups"]:
        del group["clip"]
    opt = LARS([w], lr=0.1, clip=True)
    opt.load_state_dict(state)
    assert opt.param_groups[0]["clip"] is False
    w.grad = torch.ones(3)
    opt.step()


def test_lars_options_reach_the_optimizer():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, TrainConfig(optimizer="lars", lars_eta=0.02, lars_clip=True))
    assert {(g["eta"], g["clip"]) for g in opt.param_groups} == {(0.02, True)}


class ConvPairs(Dataset):
    """Two noisy 4-D image views, to exercise the channels_last path."""

    def __init__(self, n: int = 32) -> None:
        self.x = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return {"views": [self.x[i] + 0.1 * torch.randn(3, 8, 8), self.x[i] + 0.1 * torch.randn(3, 8, 8)]}


class TinyConvMethod(Method):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.layouts: list[bool] = []

    def forward(self, batch):
        self.layouts += [v.is_contiguous(memory_format=torch.channels_last) for v in batch["views"]]
        a, b = (self.encoder(v).flatten(1) for v in batch["views"])
        return {"loss": (a - b).pow(2).mean() - 0.01 * a.std()}


def test_channels_last_changes_layout_not_the_result():
    plain, nhwc = TinyConvMethod(), TinyConvMethod()
    Trainer(_cfg(steps=3, ckpt_every=0), plain, ConvPairs(), run_dir=None).fit()
    Trainer(_cfg(steps=3, ckpt_every=0, channels_last=True), nhwc, ConvPairs(), run_dir=None).fit()
    assert not any(plain.layouts) and all(nhwc.layouts) and nhwc.layouts
    assert nhwc.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(plain.encoder[0].weight, nhwc.encoder[0].weight, atol=1e-5, rtol=1e-4)
