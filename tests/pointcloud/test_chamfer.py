"""Chamfer distance against a brute-force double loop (both directions, batched, unequal set sizes)."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.modalities.pointcloud.chamfer import chamfer_distance, nearest_distances


def _brute_force(a: torch.Tensor, b: torch.Tensor, squared: bool) -> tuple[float, list[float], list[float]]:
    """One pair of sets, plain Python loops: (CD, nearest distance of each a_i, of each b_j)."""

    def d(p, q) -> float:
        s = sum((float(x) - float(y)) ** 2 for x, y in zip(p, q))
        return s if squared else math.sqrt(s)

    a_to_b = [min(d(p, q) for q in b) for p in a]
    b_to_a = [min(d(p, q) for p in a) for q in b]
    return sum(a_to_b) / len(a) + sum(b_to_a) / len(b), a_to_b, b_to_a


@pytest.mark.parametrize("squared", [True, False])
def test_chamfer_equals_brute_force_double_loop(squared: bool) -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 7, 3, generator=g), torch.randn(3, 11, 3, generator=g)  # N != M
    per_pair = chamfer_distance(a, b, squared=squared, reduction="none")
    d_ab, d_ba = nearest_distances(a, b, squared=squared)
    want = []
    for k in range(3):
        cd, a_to_b, b_to_a = _brute_force(a[k], b[k], squared)
        want.append(cd)
        torch.testing.assert_close(d_ab[k], torch.tensor(a_to_b), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d_ba[k], torch.tensor(b_to_a), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per_pair, torch.tensor(want), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chamfer_distance(a, b, squared=squared), torch.tensor(want).mean())
    torch.testing.assert_close(
        chamfer_distance(a, b, squared=squared, reduction="sum"), torch.tensor(want).sum()
    )


def test_both_directions_count() -> None:
    # b is a subset of a: a->b is positive (a has points far from b), b->a is exactly zero.
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0]]])
    b = a[:, :2]
    d_ab, d_ba = nearest_distances(a, b)
    assert torch.equal(d_ba, torch.zeros(1, 2))
    assert d_ab[0].tolist() == [0.0, 0.0, 16.0]
    assert float(chamfer_distance(a, b)) == pytest.approx(16.0 / 3)
    assert float(chamfer_distance(a, b)) == pytest.approx(float(chamfer_distance(b, a)))  # symmetric


def test_properties_zero_on_equal_sets_and_order_free() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 9, 3, generator=g)
    shuffled = a[:, torch.randperm(9, generator=g)]
    assert float(chamfer_distance(a, shuffled)) == 0.0
    assert float(chamfer_distance(a, a + 0.1)) > 0


def test_gradient_reaches_both_sets() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(2, 5, 3, generator=g, requires_grad=True)
    b = torch.randn(2, 6, 3, generator=g, requires_grad=True)
    chamfer_distance(a, b).backward()
    assert a.grad is not None and b.grad is not None
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="B, N, D"):
        chamfer_distance(torch.zeros(2, 4, 3), torch.zeros(3, 4, 3))
    with pytest.raises(ValueError, match="non-empty"):
        chamfer_distance(torch.zeros(1, 0, 3), torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="reduction"):
        chamfer_distance(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), reduction="max")
