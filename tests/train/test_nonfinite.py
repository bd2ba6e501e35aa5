"""A step whose loss or gradients are not finite is skipped: no parameter, optimizer-state or buffer change,
counted as ``skipped_steps``; ``train.max_nonfinite_steps`` bad steps in a row stop the run with the last
(finite) checkpoint kept."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mmssl.core.method import Method
from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.optim import LARS
from mmssl.train.trainer import NonFiniteLossError, Trainer
from tests.train.test_trainer import NoisyPairs, _cfg


class BadSteps(Method):
    """A linear encoder behind a BatchNorm (whose running statistics a NaN forward would poison); the
    inputs of the steps in ``bad`` are made NaN. Records parameters, momentum and buffers after each step."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.BatchNorm1d(8)
        self.encoder = nn.Linear(8, 4)
        self.bad, self.calls, self.after = bad, 0, {}

    def forward(self, batch):
        self.calls += 1
        a, b = batch["views"]
        if self.calls in self.bad:
            a = a * float("nan")
        za, zb = self.encoder(self.norm(a)), self.encoder(self.norm(b))
        return {"loss": (za - zb).pow(2).mean() + 0.01 * za.pow(2).mean()}

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        self.after[step] = {k: v.detach().clone() for k, v in self.state_dict().items()}


def test_a_bad_step_changes_nothing_and_is_counted(tmp_path):
    method = BadSteps(bad={5})
    trainer = Trainer(_cfg(steps=8), method, NoisyPairs(), run_dir=tmp_path)
    trainer.fit()
    for key, value in method.after[5].items():  # parameters and BatchNorm statistics as after step 4
        assert torch.equal(value, method.after[4][key]), key
    assert not torch.equal(method.after[6]["encoder.weight"], method.after[5]["encoder.weight"])  # goes on
    assert all(torch.isfinite(v.float()).all() for v in method.state_dict().values())
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["skipped_steps"] for row in logged] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_skipped_step_leaves_the_optimizer_state_alone():
    method = BadSteps(bad={5})
    trainer = Trainer(_cfg(steps=6), method, NoisyPairs())
    momentum = {}

    def record(step: int, total: int) -> None:
        state = trainer.optimizer.state_dict()["state"]
        momentum[step] = [entry["momentum_buffer"].clone() for _, entry in sorted(state.items())]

    method.on_train_step_end = record
    trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(momentum[5], momentum[4]))  # untouched by the bad step
    assert not all(torch.equal(a, b) for a, b in zip(momentum[6], momentum[5]))  # the next one updates


def test_too_many_bad_steps_in_a_row_stop_with_the_last_checkpoint(tmp_path):
    method = BadSteps(bad=set(range(5, 100)))
    with pytest.raises(
        NonFiniteLossError, match=r"3 steps in a row up to step 7 .*last good checkpoint kept"
    ):
        Trainer(_cfg(steps=10, ckpt_every=2), method, NoisyPairs(), run_dir=tmp_path).fit()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["step"] == 6  # written after two skipped steps: the state of step 4, finite
    for key, value in ckpt["model"].items():
        assert torch.equal(value, method.after[4][key]), key


def test_zero_keeps_the_stop_at_the_first_bad_step(tmp_path):
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 5"):
        Trainer(_cfg(steps=8, max_nonfinite_steps=0), BadSteps(bad={5}), NoisyPairs(), run_dir=tmp_path).fit()


def _fused_sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)


def _lars(model: nn.Module) -> torch.optim.Optimizer:
    return LARS(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01, eta=0.02, nesterov=True, clip=True
    )


def _steps_on_device(make_optimizer, inputs: list[torch.Tensor]) -> tuple[dict, torch.Tensor]:
    """Steps of a linear layer, one per input, through the guard's on-device path (``found_inf``; forced
    here, on CUDA it is the default); returns the optimizer state and the weight."""
    from mmssl.train.nonfinite import NonFiniteGuard

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = make_optimizer(model)
    guard = NonFiniteGuard(model, optimizer, max_consecutive=3, device=torch.device("cpu"), on_device=True)
    for x in inputs:
        optimizer.zero_grad()
        guard.before_forward()
        loss = model(x).pow(2).sum()
        loss.backward()
        guard.step(guard.check(loss))
    return optimizer.state_dict()["state"], model.weight.detach().clone()


@pytest.mark.parametrize("make_optimizer", [_fused_sgd, _lars], ids=["fused_sgd", "lars"])
def test_a_step_skipped_on_the_device_leaves_no_trace(make_optimizer):
    # Fused SGD allocates its momentum buffers with empty_like before its kernel sees found_inf: a first
    # step skipped on the device would keep that uninitialised memory as momentum. The guard decides
    # on the host until one optimizer step was taken, so the skipped step creates none.
    nan, ones = torch.full((2, 4), float("nan")), torch.ones(2, 4)
    state, _ = _steps_on_device(make_optimizer, [nan])
    assert state == {}
    state, weight = _steps_on_device(make_optimizer, [nan, ones, ones])
    clean_state, clean_weight = _steps_on_device(make_optimizer, [ones, ones])
    assert torch.equal(weight, clean_weight)
    assert state.keys() == clean_state.keys()
    for key in state:
        assert torch.equal(state[key]["momentum_buffer"], clean_state[key]["momentum_buffer"])
    # after the first step the optimizer skips on found_inf: a later bad step changes nothing either
    state, weight = _steps_on_device(make_optimizer, [ones, ones, nan])
    assert torch.equal(weight, clean_weight)
    for key in state:
        assert torch.equal(state[key]["momentum_buffer"], clean_state[key]["momentum_buffer"])


def test_lars_reads_found_inf_on_the_device_even_at_its_first_step():
    """Set directly, as the guard does on CUDA: non-finite gradients, found_inf 1: nothing moves, and the
    only state left is zero momentum, which the next real step treats as none (v = 0 * momentum + g')."""
    torch.manual_seed(0)
    skipped, clean = nn.Linear(4, 2), nn.Linear(4, 2)
    clean.load_state_dict(skipped.state_dict())
    before = [v.clone() for v in skipped.state_dict().values()]
    opt_skipped, opt_clean = _lars(skipped), _lars(clean)
    for p in skipped.parameters():
        p.grad = torch.full_like(p, float("inf"))
    opt_skipped.found_inf = torch.ones(())  # type: ignore[attr-defined]
    opt_skipped.step()
    del opt_skipped.found_inf  # type: ignore[attr-defined]
    assert all(torch.equal(p, q) for p, q in zip(skipped.state_dict().values(), before))
    assert all(not s["momentum_buffer"].any() for s in opt_skipped.state.values())
    x = torch.ones(2, 4)
    for model, opt in ((skipped, opt_skipped), (clean, opt_clean)):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.found_inf = torch.zeros(())  # type: ignore[attr-defined]
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(skipped.state_dict().values(), clean.state_dict().values()))


def test_lars_with_found_inf_zero_steps_exactly_as_without_it():
    """On CUDA every LARS step after the first runs with found_inf set (0 on a good step): it must round as
    the plain step does, or GPU runs drift from the formula by an ulp a step."""
    torch.manual_seed(0)
    plain, flagged = nn.Linear(6, 3), nn.Linear(6, 3)
    flagged.load_state_dict(plain.state_dict())
    opt_plain, opt_flagged = _lars(plain), _lars(flagged)
    for _ in range(4):
        x = torch.randn(5, 6)
        for model, opt in ((plain, opt_plain), (flagged, opt_flagged)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
        opt_plain.step()
        opt_flagged.found_inf = torch.zeros(())  # type: ignore[attr-defined]
        opt_flagged.step()
        del opt_flagged.found_inf  # type: ignore[attr-defined]
    for p, q in zip(plain.parameters(), flagged.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt_plain.state[p]["momentum_buffer"], opt_flagged.state[q]["momentum_buffer"])
