"""Pseudo-label selection variants, FixMatch's mask, entropy, Mean Teacher's ramp-up and consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmssl.semi.pseudo_label import (
    balance_to_prior,
    confidence_mask,
    entropy,
    select_pseudo_labels,
    sigmoid_rampup,
    softmax_mse,
)


def _probs(n: int = 40, c: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(n, c, generator=g), dim=1)


def test_confident_keeps_exactly_the_samples_above_threshold():
    probs = _probs()
    labels, weights = select_pseudo_labels(probs, "confident", threshold=0.8)
    conf = probs.numpy().max(axis=1)
    assert torch.equal(labels, torch.as_tensor(probs.numpy().argmax(axis=1)))
    np.testing.assert_array_equal(weights.numpy(), (conf >= 0.8).astype(np.float32))
    assert 0 < weights.sum() < len(probs)  # the case is not trivial


def test_confident_top_fraction_selects_the_most_confident():
    probs = _probs(n=40)
    _, weights = select_pseudo_labels(probs, "confident", threshold=0.0, top_fraction=0.25)
    conf = probs.max(dim=1).values
    chosen = set(torch.nonzero(weights).flatten().tolist())
    assert len(chosen) == 10
    # Every chosen sample is at least as confident as every rejected one.
    assert conf[list(chosen)].min() >= conf[[i for i in range(40) if i not in chosen]].max()
    # With a threshold as well, both conditions must hold.
    _, both = select_pseudo_labels(probs, "confident", threshold=0.9, top_fraction=0.25)
    assert torch.equal(both.bool(), weights.bool() & (conf >= 0.9))


def test_all_gives_every_sample_weight_one_and_weighted_gives_confidence():
    probs = _probs()
    labels_all, w_all = select_pseudo_labels(probs, "all")
    assert torch.equal(w_all, torch.ones(len(probs)))
    labels_w, w_conf = select_pseudo_labels(probs, "weighted")
    assert torch.equal(labels_all, labels_w)
    expected = np.sort(probs.numpy(), axis=1)[:, -1]  # the largest probability, computed another way
    np.testing.assert_allclose(w_conf.numpy(), expected, rtol=1e-6)


def test_unknown_selection_is_rejected():
    with pytest.raises(ValueError, match="selection"):
        select_pseudo_labels(_probs(), "most")


def test_balance_to_prior_matches_class_proportions_and_keeps_the_most_confident():
    # 10 of class 0, 4 of class 1, 6 of class 2 kept; a uniform prior allows 4 per class.
    labels = torch.tensor([0] * 10 + [1] * 4 + [2] * 6 + [1] * 3)
    keep = torch.tensor([True] * 20 + [False] * 3)
    conf = torch.linspace(0.5, 1.0, len(labels))
    out = balance_to_prior(labels, conf, keep, prior=torch.tensor([1.0, 1.0, 1.0]))
    assert not (out & ~keep).any()
    assert torch.bincount(labels[out], minlength=3).tolist() == [4, 4, 4]
    for c in range(3):  # within a class, the kept ones are the most confident candidates
        cand = torch.nonzero(keep & (labels == c)).flatten()
        kept = torch.nonzero(out & (labels == c)).flatten()
        assert set(kept.tolist()) == set(cand[conf[cand].argsort(descending=True)[:4]].tolist())
    # A 2:1:1 prior: class 0 gets twice the others.
    out = balance_to_prior(labels, conf, keep, prior=torch.tensor([2.0, 1.0, 1.0]))
    assert torch.bincount(labels[out], minlength=3).tolist() == [8, 4, 4]


def test_fixmatch_mask_is_max_prob_at_least_threshold():
    probs = torch.tensor([[0.95, 0.05], [0.94, 0.06], [0.02, 0.98], [0.5, 0.5]])
    assert confidence_mask(probs, 0.95).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_entropy_is_minus_sum_p_log_p():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    p = np.exp(logits.numpy().astype(np.float64))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(entropy(logits).numpy(), -(p * np.log(p)).sum(axis=1), rtol=1e-5)
    # Known values: uniform -> log C; a saturated one-hot -> 0 (no NaN from 0 log 0).
    assert entropy(torch.zeros(1, 10)).item() == pytest.approx(math.log(10))
    assert entropy(torch.tensor([[1e4, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0.0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5.0, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(10.0, 10) == 1.0
    assert sigmoid_rampup(25.0, 10) == 1.0
    assert sigmoid_rampup(3.0, 0) == 1.0
    values = [sigmoid_rampup(s, 10) for s in range(11)]
    assert values == sorted(values)


def test_softmax_mse_is_the_mean_squared_difference_and_stops_teacher_gradients():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    expected = ((torch.softmax(s, 1) - torch.softmax(t, 1)) ** 2).sum() / 12
    loss = softmax_mse(s, t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert s.grad is not None and t.grad is None
