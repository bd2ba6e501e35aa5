"""Linear probe on frozen features, and end-to-end fine-tuning."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from mmssl.data import DataBundle
from mmssl.eval import finetune_evaluator, linear_evaluator
from mmssl.eval.context import EvalContext
from mmssl.eval.finetune import finetune_classifier
from mmssl.eval.linear import linear_accuracy, linear_probe_accuracy, train_linear_probe
from mmssl.eval.options import FinetuneOptions, ProbeOptions


def separable(n, dim, num_classes, seed, margin=0.5):
    """Labels from a random linear map, keeping only points at least ``margin`` from any boundary."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, num_classes, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4 * n, dim, generator=gen)
    scores = x @ w
    top2 = scores.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > margin
    return x[keep][:n], scores[keep][:n].argmax(dim=1)


def test_probe_reaches_high_accuracy_on_linearly_separable_data():
    x_tr, y_tr = separable(300, 10, 3, seed=1)
    x_te, y_te = separable(300, 10, 3, seed=2)
    # Anisotropic scale and offset: standardisation must handle it.
    scale, shift = torch.logspace(-2, 2, 10), torch.linspace(-50, 50, 10)
    acc = linear_probe_accuracy(
        x_tr * scale + shift, y_tr, x_te * scale + shift, y_te, 3, epochs=100, lr=3e-2
    )
    assert acc >= 0.95


def test_standardisation_is_folded_into_the_returned_layer():
    """With normalize=True the probe sees (x - mu) / sigma, so any per-dimension positive affine map of
    the train features gives the same classifier once applied to correspondingly mapped inputs."""
    x, y = separable(200, 6, 4, seed=3, margin=0.0)
    scale, shift = (
        torch.tensor([0.01, 3.0, 100.0, 1.0, 0.5, 7.0]),
        torch.tensor([5.0, -2.0, 0.0, 1e3, 1.0, -40.0]),
    )
    a = train_linear_probe(x, y, 4, epochs=20, seed=0)
    b = train_linear_probe(x * scale + shift, y, 4, epochs=20, seed=0)
    x_new = torch.randn(50, 6)
    torch.testing.assert_close(b(x_new * scale + shift), a(x_new), rtol=1e-3, atol=1e-3)


def test_probe_agrees_with_sklearn_logistic_regression_on_overlapping_classes():
    gen = torch.Generator().manual_seed(5)
    centers = torch.randn(4, 20, generator=gen)
    y_tr, y_te = torch.randint(0, 4, (400,), generator=gen), torch.randint(0, 4, (400,), generator=gen)
    x_tr = centers[y_tr] + 2.5 * torch.randn(400, 20, generator=gen)
    x_te = centers[y_te] + 2.5 * torch.randn(400, 20, generator=gen)
    ours = linear_probe_accuracy(x_tr, y_tr, x_te, y_te, 4, epochs=50)
    mean, std = x_tr.mean(0), x_tr.std(0)
    ref = LogisticRegression(max_iter=1000).fit(((x_tr - mean) / std).numpy(), y_tr.numpy())
    ref_acc = ref.score(((x_te - mean) / std).numpy(), y_te.numpy())
    assert 0.5 < ref_acc < 0.95  # the problem is neither trivial nor hopeless
    assert abs(ours - ref_acc) < 0.04


def test_probe_is_deterministic_per_seed_and_handles_constant_features():
    x, y = separable(100, 5, 3, seed=6)
    x[:, 2] = 7.0  # a dead feature: zero variance must not produce NaN
    a, b = train_linear_probe(x, y, 3, epochs=5, seed=1), train_linear_probe(x, y, 3, epochs=5, seed=1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert torch.isfinite(a.weight).all()
    # Training flushes subnormals for speed; the caller's floating-point mode must be restored.
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0
    c = train_linear_probe(x, y, 3, epochs=5, seed=2, batch_size=16)
    assert not torch.equal(a.weight, c.weight)
    x, y = separable(100, 5, 3, seed=6)
    raw = train_linear_probe(x, y, 3, epochs=100, lr=3e-2, normalize=False)
    assert linear_accuracy(raw, x, y) > 0.95


# --- fine-tuning --------------------------------------------------------------------------------


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int = 8, out_dim: int = 16) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, out_dim))

    def forward(self, x):
        return {"global": self.net(x)}


class Labelled(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "label": int(self.y[i])}


def _cluster_bundle(seed: int = 0) -> DataBundle:
    centers = torch.randn(4, 8, generator=torch.Generator().manual_seed(100)) * 2
    gen = torch.Generator().manual_seed(seed)
    y_tr, y_te = torch.arange(4).repeat(40), torch.arange(4).repeat(20)
    x_tr = centers[y_tr] + 0.7 * torch.randn(len(y_tr), 8, generator=gen)
    x_te = centers[y_te] + 0.7 * torch.randn(len(y_te), 8, generator=gen)
    train, test = Labelled(x_tr, y_tr), Labelled(x_te, y_te)
    return DataBundle(pretrain=train, eval_train=train, eval_test=test, num_classes=4)


def test_finetune_beats_chance_and_leaves_encoder_untouched():
    torch.manual_seed(0)
    enc = MLPEncoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    data = _cluster_bundle()
    acc = finetune_classifier(
        enc, data.eval_train, data.eval_test, 4, epochs=20, batch_size=32, lr=3e-3, seed=0
    )
    assert acc > 0.7  # chance is 0.25
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    # max_steps caps training: a single step with a tiny learning rate stays near chance.
    capped = finetune_evaluator(
        enc, data, EvalContext(device=torch.device("cpu"), seed=0), FinetuneOptions(max_steps=1, lr=1e-6)
    )
    assert set(capped) == {"finetune_top1"} and capped["finetune_top1"] < 0.6


def test_linear_evaluator_on_bundle():
    torch.manual_seed(0)
    out = linear_evaluator(
        MLPEncoder(),
        _cluster_bundle(),
        EvalContext(device=torch.device("cpu"), seed=0),
        ProbeOptions(epochs=30, lr=1e-2),
    )
    assert set(out) == {"linear_top1"} and 0.8 < out["linear_top1"] <= 1.0
    with pytest.raises(ValueError, match="eval_test"):
        linear_evaluator(
            MLPEncoder(),
            DataBundle(pretrain=[], eval_train=[1]),
            EvalContext(device=torch.device("cpu"), seed=0),
        )
