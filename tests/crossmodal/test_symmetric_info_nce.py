"""Symmetric InfoNCE against a per-sample loop; the learnable temperature gets gradients and stays clamped."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.core.losses import LearnableTemperature, symmetric_info_nce


def naive_symmetric(a: torch.Tensor, b: torch.Tensor, t: float) -> float:
    """CLIP's loss written out sample by sample in float64 Python arithmetic."""
    a = [row / row.norm() for row in a.double()]
    b = [row / row.norm() for row in b.double()]
    n = len(a)

    def s(i: int, j: int) -> float:
        return float(a[i] @ b[j]) / t

    a_to_b = sum(-math.log(math.exp(s(i, i)) / sum(math.exp(s(i, j)) for j in range(n))) for i in range(n))
    b_to_a = sum(-math.log(math.exp(s(j, j)) / sum(math.exp(s(i, j)) for i in range(n))) for j in range(n))
    return (a_to_b / n + b_to_a / n) / 2


@pytest.mark.parametrize("t", [0.07, 0.5])
def test_matches_per_sample_loop(t):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    assert symmetric_info_nce(a, b, temperature=t).item() == pytest.approx(naive_symmetric(a, b, t), rel=1e-5)


def test_is_symmetric_in_its_arguments_and_needs_pairs():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    torch.testing.assert_close(symmetric_info_nce(a, b), symmetric_info_nce(b, a))
    with pytest.raises(ValueError, match="paired rows"):
        symmetric_info_nce(a, b[:5])


def test_gradient_reaches_the_learnable_temperature():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    temp = LearnableTemperature(init=0.1)
    assert temp().item() == pytest.approx(0.1)
    loss = symmetric_info_nce(a, b, temperature=temp())
    loss.backward()
    # d loss / d log(1/t), by central differences of the independent loop implementation.
    log_scale, eps = temp.log_scale.item(), 1e-4
    numeric = (
        naive_symmetric(a, b, math.exp(-(log_scale + eps)))
        - naive_symmetric(a, b, math.exp(-(log_scale - eps)))
    ) / (2 * eps)
    assert temp.log_scale.grad is not None
    assert temp.log_scale.grad.item() == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_temperature_stays_clamped_and_can_leave_the_bound():
    temp = LearnableTemperature(init=0.07, min_temperature=0.01, max_temperature=1.0)
    with torch.no_grad():
        temp.log_scale.fill_(10.0)  # t = e^-10, far below the minimum
    assert temp().item() == pytest.approx(0.01)  # the value used is clamped ...
    temp.clamp_()
    assert temp.log_scale.item() == pytest.approx(math.log(100.0))  # ... and so is the parameter
    # At the bound the gradient still flows, so the temperature can move back inside.
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    symmetric_info_nce(a, b, temperature=temp()).backward()
    assert temp.log_scale.grad.abs().item() > 0
    with torch.no_grad():
        temp.log_scale.fill_(-5.0)
    temp.clamp_()
    assert temp().item() == pytest.approx(1.0)


def test_fixed_temperature_is_a_buffer():
    temp = LearnableTemperature(init=0.2, learnable=False)
    assert list(temp.parameters()) == [] and "log_scale" in temp.state_dict()
    assert temp().item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="temperatures must satisfy"):
        LearnableTemperature(init=0.005, min_temperature=0.01)
