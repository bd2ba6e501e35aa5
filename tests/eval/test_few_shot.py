"""N-shot sampling and few-shot linear evaluation over seeds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import mmssl.eval.few_shot as few_shot_module
from mmssl.data import DataBundle
from mmssl.errors import ConfigError
from mmssl.eval import few_shot_evaluator
from mmssl.eval.context import EvalContext
from mmssl.eval.few_shot import few_shot_linear, sample_n_shot
from mmssl.eval.linear import linear_accuracy, train_linear_probe
from mmssl.eval.options import FewShotOptions


def _labels():
    # Unequal class sizes, interleaved, so that "first n of each class" would be an easy wrong answer.
    return torch.tensor([c for _ in range(40) for c in range(5)] + [0] * 10 + [3] * 7)


@pytest.mark.parametrize("n", [1, 5, 12])
def test_sample_n_shot_picks_exactly_n_per_class(n):
    labels = _labels()
    idx = sample_n_shot(labels, n, seed=0)
    assert idx.dtype == torch.long and len(set(idx.tolist())) == len(idx)  # no repeats
    assert torch.bincount(labels[idx], minlength=5).tolist() == [n] * 5


def test_sample_n_shot_deterministic_per_seed_and_varies_across_seeds():
    labels = _labels()
    assert torch.equal(sample_n_shot(labels, 5, seed=3), sample_n_shot(labels, 5, seed=3))
    draws = [frozenset(sample_n_shot(labels, 5, seed=s).tolist()) for s in range(5)]
    assert len(set(draws)) == 5


def test_sample_n_shot_names_the_short_class():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 3)
    with pytest.raises(ValueError, match="class 2"):
        sample_n_shot(labels, 5, seed=0)


def _gaussians(spread: float, seed: int, num_classes: int = 5, dim: int = 12):
    centers = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(42)) * 3
    gen = torch.Generator().manual_seed(seed)
    y_tr, y_te = torch.arange(num_classes).repeat(30), torch.arange(num_classes).repeat(20)
    x_tr = centers[y_tr] + spread * torch.randn(len(y_tr), dim, generator=gen)
    x_te = centers[y_te] + spread * torch.randn(len(y_te), dim, generator=gen)
    return x_tr, y_tr, x_te, y_te


def test_few_shot_high_on_separable_clusters():
    x_tr, y_tr, x_te, y_te = _gaussians(spread=0.5, seed=1)
    out = few_shot_linear(x_tr, y_tr, x_te, y_te, 5, shots=(1, 5), epochs=100)
    assert set(out) == {"fewshot_1_mean", "fewshot_1_std", "fewshot_5_mean", "fewshot_5_std"}
    assert out["fewshot_1_mean"] > 0.9 and out["fewshot_5_mean"] > 0.95
    assert all(0.0 <= v <= 1.0 for v in out.values())


def test_few_shot_mean_and_std_are_over_seeds():
    x_tr, y_tr, x_te, y_te = _gaussians(spread=3.0, seed=2)  # overlapping: accuracy varies with the draw
    kw = dict(epochs=60, lr=1e-2, weight_decay=1e-4, batch_size=256, normalize=True)
    out = few_shot_linear(x_tr, y_tr, x_te, y_te, 5, shots=(1, 3), seeds=6, **kw)
    for n in (1, 3):
        per_seed = []
        for seed in range(6):
            idx = sample_n_shot(y_tr, n, seed)
            layer = train_linear_probe(x_tr[idx], y_tr[idx], 5, seed=seed, **kw)
            per_seed.append(linear_accuracy(layer, x_te, y_te))
        assert np.std(per_seed) > 0  # otherwise the comparison below would prove little
        assert out[f"fewshot_{n}_mean"] == pytest.approx(np.mean(per_seed), abs=1e-9)
        assert out[f"fewshot_{n}_std"] == pytest.approx(np.std(per_seed), abs=1e-9)


class _Identity(torch.nn.Module):
    out_dim = 12

    def forward(self, x):
        return {"global": x}


class _Labelled(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "label": int(self.y[i])}


def test_few_shot_evaluator_default_seed_count_and_errors():
    x_tr, y_tr, x_te, y_te = _gaussians(spread=0.5, seed=3)
    data = DataBundle(
        pretrain=None, eval_train=_Labelled(x_tr, y_tr), eval_test=_Labelled(x_te, y_te), num_classes=5
    )
    out = few_shot_evaluator(
        _Identity(),
        data,
        EvalContext(device=torch.device("cpu"), seed=7),
        FewShotOptions(shots=[2], epochs=50),
    )
    direct = few_shot_linear(x_tr, y_tr, x_te, y_te, 5, shots=[2], seeds=range(7, 12), epochs=50)
    assert out == pytest.approx(direct)  # five seeds by default, offset by the evaluator's seed
    assert out["fewshot_2_mean"] > 0.9
    with pytest.raises(ValueError, match="class"):
        few_shot_evaluator(
            _Identity(), data, EvalContext(device=torch.device("cpu"), seed=0), FewShotOptions(shots=[31])
        )
    with pytest.raises(ValueError, match="eval_train / eval_test"):
        few_shot_evaluator(
            _Identity(), DataBundle(pretrain=None), EvalContext(device=torch.device("cpu"), seed=0)
        )


# ------------------------------------------------------------------ a shot count the data cannot supply

NAMES = ["zero", "one", "two", "three", "four"]


class _Named(_Labelled):
    """A labelled split that lists its ``targets`` and ``class_names`` (as the toolkit's datasets do)."""

    def __init__(self, x, y):
        super().__init__(x, y)
        self.targets, self.class_names = [int(v) for v in y], NAMES


class _Refuses(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("the encoder ran: features were extracted before the check")


@pytest.fixture
def _fresh_warnings(monkeypatch):
    # each skip is logged once per process (raising=False: the module had no such set before)
    monkeypatch.setattr(few_shot_module, "_warned", set(), raising=False)


def _short_class_zero(n: int = 5):
    """Separable blobs where class 0 ('zero') keeps only ``n`` of its 30 training samples."""
    x_tr, y_tr, x_te, y_te = _gaussians(spread=0.5, seed=4)
    keep = torch.ones(len(y_tr), dtype=torch.bool)
    keep[(y_tr == 0).nonzero().flatten()[n:]] = False
    return x_tr[keep], y_tr[keep], x_te, y_te


def _blobs(x_tr, y_tr, x_te, y_te) -> DataBundle:
    return DataBundle(
        pretrain=None,
        eval_train=_Named(x_tr, y_tr),
        eval_test=_Labelled(x_te, y_te),
        num_classes=5,
        name="blobs",
    )


def test_shot_count_a_class_cannot_supply_is_skipped_and_said(caplog, _fresh_warnings):
    x_tr, y_tr, x_te, y_te = _short_class_zero()
    data = _blobs(x_tr, y_tr, x_te, y_te)
    with caplog.at_level(logging.WARNING, logger="mmssl.eval.few_shot"):
        out = few_shot_evaluator(
            _Identity(), data, EvalContext(seed=0), FewShotOptions(shots=[1, 5, 10], seeds=2, epochs=20)
        )
    assert set(out) == {f"fewshot_{n}_{s}" for n in (1, 5) for s in ("mean", "std")} | {"fewshot_max_shots"}
    assert out["fewshot_max_shots"] == 5 and out["fewshot_5_mean"] > 0.9
    assert caplog.messages == [
        "eval.few_shot.shots: 10-shot skipped: class 0 ('zero') has only 5 samples in eval_train of dataset "
        "'blobs'; the other shot counts (1, 5) are reported"
    ]
    # the plain function: the same skip, and the same numbers for the shot counts that fit
    direct = few_shot_linear(x_tr, y_tr, x_te, y_te, 5, shots=[1, 5, 10], seeds=[0, 1], epochs=20)
    assert direct == pytest.approx(out)


def test_no_shot_count_fits_fails_before_any_feature_is_extracted(_fresh_warnings):
    x_tr, y_tr, x_te, y_te = _short_class_zero()
    data = _blobs(x_tr, y_tr, x_te, y_te)
    message = (
        r"eval\.few_shot\.shots=\[10, 20\]: class 0 \('zero'\) has only 5 samples in eval_train of dataset "
        r"'blobs', fewer than 10 shots; every n in eval\.few_shot\.shots must be <= 5 for this data"
    )
    with pytest.raises(ConfigError, match=message):
        few_shot_evaluator(_Refuses(), data, EvalContext(), FewShotOptions(shots=[10, 20]))
    # the runner asks the same before pretraining (mmssl.pipeline.preflight)
    with pytest.raises(ConfigError, match=message):
        few_shot_evaluator.preflight(data, FewShotOptions(shots=[10, 20]))
