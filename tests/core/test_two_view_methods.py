"""SimCLR, MoCo (queue / batch / memory bank) and BYOL against references built from the core losses.

Each method takes one optimiser step (plus ``on_train_step_end``); a deep copy of it taken before the
step is run by hand instead: the losses of :mod:`mmssl.core.losses` on projections computed here, the
same random draws in the same order (shuffled BN's permutation, the bank's negatives), a hand-written
SGD step, EMA update, queue write and memory-bank update. Losses, parameters, EMA targets and stored
negatives must agree. Also: checkpoint keys and recipe options are those of the previous releases.
"""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.losses import byol_regression, info_nce, nt_xent
from mmssl.core.method import Method, method_class
from mmssl.core.methods.byol import BYOL
from mmssl.core.methods.moco import MoCo
from mmssl.core.methods.simclr import SimCLR
from mmssl.data import DataBundle
from mmssl.data.keys import INDEX, VIEWS
from mmssl.registry import METHODS
from tests.core.two_view_helpers import VecEncoder, two_view_batch

HEADS = {"projector_hidden": 32, "projector_dim": 8}
LR = 0.1
STEP, TOTAL_STEPS = 1, 10


def _train_step(method: Method, batch: dict) -> Tensor:
    """One step as the trainer does it: loss, SGD step, end-of-step hook. Random draws from seed 1."""
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=LR)
    torch.manual_seed(1)
    loss = method(batch)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    method.on_train_step_end(STEP, TOTAL_STEPS)
    return loss.detach()


def _sgd(modules: list[nn.Module], loss: Tensor) -> None:
    params = [p for m in modules for p in m.parameters()]
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(LR * g)


def _project(ref: nn.Module, x: Tensor) -> Tensor:
    return ref.projector(ref.encoder(x)["global"])


@torch.no_grad()
def _target_keys(teacher: nn.ModuleDict, x: Tensor, groups: int = 1) -> Tensor:
    """Target projections; with groups > 1, BN sees the batch permuted and split (MoCo's shuffling BN),
    and the permutation is undone by indexing with its inverse."""
    perm = torch.randperm(x.shape[0]) if groups > 1 else torch.arange(x.shape[0])
    keys = [teacher["projector"](teacher["encoder"](c)["global"]) for c in x[perm].chunk(groups)]
    return torch.cat(keys)[perm.argsort()]


def _assert_same_parameters(method: nn.Module, ref: nn.Module, names: list[str]) -> None:
    for name in names:
        got, want = (
            dict(getattr(method, name).named_parameters()),
            dict(getattr(ref, name).named_parameters()),
        )
        assert got.keys() == want.keys()
        for key in got:
            torch.testing.assert_close(got[key], want[key], msg=f"{name}.{key}")


def _assert_ema(method: nn.Module, teacher_before: nn.ModuleDict, ref: nn.Module, momentum: float) -> None:
    """Target parameters are ``m * before + (1 - m) * online after the step``."""
    for part in ("encoder", "projector"):
        online = dict(getattr(ref, part).named_parameters())
        for key, before in teacher_before[part].named_parameters():
            want = momentum * before + (1.0 - momentum) * online[key]
            got = dict(method.teacher.module[part].named_parameters())[key]
            torch.testing.assert_close(got, want, msg=f"teacher.module.{part}.{key}")


def test_simclr_matches_nt_xent_reference():
    torch.manual_seed(0)
    method = SimCLR(VecEncoder(), temperature=0.3, **HEADS)
    ref = copy.deepcopy(method)
    batch = two_view_batch()
    loss = _train_step(method, batch)

    x1, x2 = batch["views"]
    expected = nt_xent(_project(ref, x1), _project(ref, x2), temperature=0.3)
    _sgd([ref.encoder, ref.projector], expected)
    torch.testing.assert_close(loss, expected.detach())
    _assert_same_parameters(method, ref, ["encoder", "projector"])


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("negatives", ["queue", "batch", "memory_bank"])
def test_moco_matches_info_nce_reference(negatives, symmetric):
    torch.manual_seed(0)
    method = MoCo(
        VecEncoder(),
        DataBundle(pretrain=range(96)),
        negatives=negatives,
        temperature=0.2,
        momentum=0.9,
        queue_size=20,
        num_negatives=32,
        symmetric=symmetric,
        shuffle_bn_groups=3,
        **HEADS,
    )
    ref = copy.deepcopy(method)
    batch = two_view_batch(12)
    x1, x2 = batch["views"]
    index = batch["index"]
    loss = _train_step(method, batch)

    torch.manual_seed(1)

    def key(x: Tensor, projection: Tensor | None) -> Tensor:
        if negatives == "queue":  # momentum encoder with shuffled BN
            return _target_keys(ref.teacher.module, x, groups=3)
        if negatives == "batch":  # the query encoder, with gradient
            return projection if projection is not None else _project(ref, x)
        return ref.bank.features[index]  # the sample's stored feature

    def stored_negatives() -> Tensor | None:
        if negatives == "queue":
            return ref.queue.queue.clone()
        if negatives == "memory_bank":
            return ref.bank.features[torch.randint(96, (32,))]
        return None  # the other keys of the batch

    z1 = _project(ref, x1)
    k2 = key(x2, None)
    expected = info_nce(z1, k2, negatives=stored_negatives(), temperature=0.2)
    z2 = None
    if symmetric:
        z2 = _project(ref, x2)
        expected = 0.5 * (expected + info_nce(z2, key(x1, z1), negatives=stored_negatives(), temperature=0.2))
    _sgd([ref.encoder, ref.projector], expected)

    torch.testing.assert_close(loss, expected.detach())
    _assert_same_parameters(method, ref, ["encoder", "projector"])
    if negatives == "queue":
        _assert_ema(method, ref.teacher.module, ref, momentum=0.9)
        queue = ref.queue.queue.clone()
        queue[:12] = F.normalize(k2, dim=1)  # the second view's keys, after the loss used the old queue
        torch.testing.assert_close(method.queue.queue, queue)
        assert int(method.queue.ptr) == 12
    else:
        assert method.teacher is None
    if negatives == "memory_bank":
        seen = z1.detach() if z2 is None else (z1.detach() + z2.detach()) / 2
        bank = ref.bank.features.clone()
        bank[index] = F.normalize(0.5 * bank[index] + 0.5 * F.normalize(seen, dim=1), dim=1)
        torch.testing.assert_close(method.bank.features, bank)


def test_byol_matches_regression_reference():
    torch.manual_seed(0)
    method = BYOL(VecEncoder(), momentum_base=0.9, predictor_hidden=32, **HEADS)
    ref = copy.deepcopy(method)
    batch = two_view_batch()
    x1, x2 = batch["views"]
    loss = _train_step(method, batch)

    teacher = ref.teacher.module
    forward = byol_regression(ref.predictor(_project(ref, x1)), _target_keys(teacher, x2))
    backward = byol_regression(ref.predictor(_project(ref, x2)), _target_keys(teacher, x1))
    expected = (forward + backward) / 2
    _sgd([ref.encoder, ref.projector, ref.predictor], expected)

    torch.testing.assert_close(loss, expected.detach())
    _assert_same_parameters(method, ref, ["encoder", "projector", "predictor"])
    tau = 1 - (1 - 0.9) * (math.cos(math.pi * STEP / TOTAL_STEPS) + 1) / 2  # BYOL, Sec. 3.2
    _assert_ema(method, teacher, ref, momentum=tau)


# ---------------------------------------------------------------- checkpoints and recipe options
ENCODER_KEYS = [
    "net.0.weight",
    "net.0.bias",
    "net.1.weight",
    "net.1.bias",
    "net.1.running_mean",
    "net.1.running_var",
    "net.1.num_batches_tracked",
    "net.3.weight",
    "net.3.bias",
]
HEAD_KEYS = [
    "net.0.weight",
    "net.1.weight",
    "net.1.bias",
    "net.1.running_mean",
    "net.1.running_var",
    "net.1.num_batches_tracked",
    "net.3.weight",
    "net.3.bias",
]


def _under(prefix: str, keys: list[str]) -> list[str]:
    return [f"{prefix}.{k}" for k in keys]


ONLINE = _under("encoder", ENCODER_KEYS) + _under("projector", HEAD_KEYS)
TEACHER = _under("teacher.module.encoder", ENCODER_KEYS) + _under("teacher.module.projector", HEAD_KEYS)

#: state-dict keys, in order, as written by checkpoints of the former generic SiameseMethod
SAVED_KEYS = {
    "simclr": ONLINE,
    "moco_queue": ONLINE + TEACHER + ["queue.queue", "queue.ptr"],
    "moco_batch": ONLINE,
    "moco_memory_bank": ONLINE + ["bank.features"],
    "byol": ONLINE + _under("predictor", HEAD_KEYS) + TEACHER,
}
BUILDERS = {
    "simclr": lambda: SimCLR(VecEncoder(), **HEADS),
    "moco_queue": lambda: MoCo(VecEncoder(), negatives="queue", queue_size=24, **HEADS),
    "moco_batch": lambda: MoCo(VecEncoder(), negatives="batch", **HEADS),
    "moco_memory_bank": lambda: MoCo(
        VecEncoder(), DataBundle(pretrain=range(96)), negatives="memory_bank", **HEADS
    ),
    "byol": lambda: BYOL(VecEncoder(), predictor_hidden=32, **HEADS),
}


@pytest.mark.parametrize("name", sorted(SAVED_KEYS))
def test_state_dict_keys_are_those_of_saved_checkpoints(name):
    method = BUILDERS[name]()
    assert list(method.state_dict()) == SAVED_KEYS[name]
    method.load_state_dict(copy.deepcopy(method.state_dict()), strict=True)


#: the recipes' option names and defaults (recipes/image/simclr.yaml, moco_v2.yaml, byol.yaml, quickstart)
RECIPE_OPTIONS = {
    "simclr": {
        "temperature": 0.5,
        "projector_hidden": 512,
        "projector_dim": 128,
        "projector_layers": 2,
        "gather": True,
    },
    "moco": {
        "negatives": "queue",
        "temperature": 0.2,
        "momentum": 0.99,
        "queue_size": None,
        "num_negatives": 4096,
        "memory_bank_momentum": 0.5,
        "projector_hidden": 512,
        "projector_dim": 128,
        "symmetric": False,
        "shuffle_bn_groups": 2,
    },
    "byol": {
        "momentum_base": 0.996,
        "projector_hidden": 1024,
        "projector_dim": 256,
        "predictor_hidden": 1024,
    },
}


@pytest.mark.parametrize("name", sorted(RECIPE_OPTIONS))
def test_registered_names_keep_their_recipe_options(name):
    builder = METHODS.get(name)
    params = inspect.signature(builder).parameters
    assert list(params)[:2] == ["encoder", "data"]
    assert {k: p.default for k, p in params.items() if k not in ("encoder", "data")} == RECIPE_OPTIONS[name]
    assert method_class(builder, name) is builder


def test_memory_bank_moco_consumes_the_sample_index():
    assert MoCo.consumed_keys({}) == {VIEWS}
    assert MoCo.consumed_keys({"negatives": "queue"}) == {VIEWS}
    assert MoCo.consumed_keys({"negatives": "memory_bank"}) == {VIEWS, INDEX}
    assert SimCLR.consumed_keys({}) == BYOL.consumed_keys({}) == {VIEWS}


def test_queue_size_rule_keeps_the_queue_a_tenth_of_the_set():
    from mmssl.core.methods.moco import queue_size_for

    assert queue_size_for(1_281_167) == 65536  # ImageNet: MoCo's own queue
    assert queue_size_for(45_000) == 4096 and queue_size_for(5_000) == 256 and queue_size_for(100) == 256
    for n in (3_000, 20_000, 300_000):
        k = queue_size_for(n)
        assert k <= n / 10 and 2 * k > n / 10 and k & (k - 1) == 0  # the largest power of two below N/10
    moco = MoCo(VecEncoder(), DataBundle(pretrain=range(50_000)), **HEADS)
    assert moco.queue.size == 4096
