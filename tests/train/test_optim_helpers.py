"""Direct tests of the optimiser helpers: which parameters get weight decay, and the peak learning rate.

The expected groups are derived from the module types (weights of convolutions and linear layers are
decayed; biases and every normalisation parameter are not), not from the rule the code uses (tensor
rank and name), and the learning rate from the linear scaling rule written out here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmssl.train.config import TrainConfig
from mmssl.train.optim import build_optimizer, effective_lr, parameter_groups


class _Net(nn.Module):
    """Every kind of parameter a backbone has, plus a frozen layer and a bare learnable scalar."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)  # weight + bias
        self.bn = nn.BatchNorm2d(4)
        self.conv_nobias = nn.Conv2d(4, 4, 1, bias=False)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 5)
        self.frozen = nn.Linear(5, 5)
        self.frozen.requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.zeros(()))  # a 0-d scalar, not a weight matrix


def _expected_split(model: nn.Module) -> tuple[set[int], set[int]]:
    """(decayed, not decayed) parameter ids by module type: conv / linear weights vs the rest."""
    decay, no_decay = set(), set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_weight = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            (decay if is_weight else no_decay).add(id(p))
    return decay, no_decay


def _ids(group: dict) -> list[int]:
    return [id(p) for p in group["params"]]


def test_biases_and_norms_are_not_decayed_and_every_parameter_is_in_exactly_one_group() -> None:
    model = _Net()
    groups = parameter_groups(model, weight_decay=0.05, exclude_bias_and_norm=True)
    decayed = [g for g in groups if g["weight_decay"] > 0]
    undecayed = [g for g in groups if g["weight_decay"] == 0]
    assert len(decayed) == 1 and len(undecayed) == 1 and len(groups) == 2
    assert decayed[0]["weight_decay"] == 0.05
    # The undecayed group is also left out of LARS' trust ratio (plain momentum SGD).
    assert undecayed[0]["lars_adapt"] is False and decayed[0].get("lars_adapt", True) is True
    want_decay, want_no_decay = _expected_split(model)
    assert set(_ids(decayed[0])) == want_decay
    assert set(_ids(undecayed[0])) == want_no_decay
    # The expected sets name the actual parameters (guards the reference itself).
    assert want_decay == {id(model.conv.weight), id(model.conv_nobias.weight), id(model.fc.weight)}
    assert id(model.bn.weight) in want_no_decay and id(model.log_temperature) in want_no_decay
    # Each trainable parameter exactly once over all groups; frozen ones nowhere.
    all_ids = [i for g in groups for i in _ids(g)]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(all_ids) == len(set(all_ids)) == len(trainable)
    assert set(all_ids) == set(trainable)
    assert not {id(p) for p in model.frozen.parameters()} & set(all_ids)


def test_without_exclusion_everything_trainable_is_decayed_in_one_group() -> None:
    model = _Net()
    groups = parameter_groups(model, weight_decay=1e-4, exclude_bias_and_norm=False)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(_ids(groups[0])) == sorted(trainable)


def test_a_model_without_biases_or_norms_gets_no_empty_group() -> None:
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    groups = parameter_groups(model, weight_decay=0.1, exclude_bias_and_norm=True)
    assert len(groups) == 1 and set(_ids(groups[0])) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adamw"])
def test_built_optimizers_apply_the_groups_weight_decay(optimizer: str) -> None:
    """What the optimiser holds, not just what the helper returns: weight decay 0 on norms/biases."""
    model = _Net()
    cfg = TrainConfig(optimizer=optimizer, weight_decay=0.3, lr=0.5)
    opt = build_optimizer(model, cfg)
    by_id = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    want_decay, want_no_decay = _expected_split(model)
    assert {i for i, wd in by_id.items() if wd == 0.3} == want_decay
    assert {i for i, wd in by_id.items() if wd == 0.0} == want_no_decay


def _linear_rule(lr: float, batch_size: int, accumulate: int, world_size: int) -> float:
    """Goyal et al. 2017: the learning rate grows with the global batch, ``lr * global_batch / 256``."""
    global_batch = batch_size * accumulate * world_size
    return lr * global_batch / 256


@pytest.mark.parametrize(
    "lr, batch_size, accumulate, world_size",
    [(0.3, 256, 1, 1), (0.3, 512, 1, 1), (1.2, 64, 2, 4), (4.8, 24, 3, 2), (0.1, 1, 1, 1)],
)
def test_effective_lr_follows_the_linear_scaling_rule(
    lr: float, batch_size: int, accumulate: int, world_size: int
) -> None:
    cfg = TrainConfig(lr=lr, batch_size=batch_size, accumulate=accumulate, lr_scaling="linear")
    expected = _linear_rule(lr, batch_size, accumulate, world_size)
    assert effective_lr(cfg, world_size) == pytest.approx(expected, rel=1e-12)
    # Doubling the global batch doubles the learning rate.
    assert effective_lr(cfg, 2 * world_size) == pytest.approx(2 * expected, rel=1e-12)


def test_effective_lr_without_scaling_is_the_recipe_lr_whatever_the_batch() -> None:
    for batch_size, accumulate, world_size in [(256, 1, 1), (24, 4, 8), (1024, 2, 2)]:
        cfg = TrainConfig(lr=0.7, batch_size=batch_size, accumulate=accumulate, lr_scaling="none")
        assert effective_lr(cfg, world_size) == 0.7


def test_built_optimizer_starts_at_the_effective_lr() -> None:
    cfg = TrainConfig(lr=0.6, batch_size=32, accumulate=2, lr_scaling="linear", optimizer="lars")
    opt = build_optimizer(_Net(), cfg, world_size=2)
    assert len(opt.param_groups) == 2
    assert all(g["lr"] == pytest.approx(0.6 * 32 * 2 * 2 / 256) for g in opt.param_groups)
