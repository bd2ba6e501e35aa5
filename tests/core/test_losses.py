"""Core losses against independent references: per-anchor loops, lightly, hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmssl.core.losses import (
    byol_regression,
    info_nce,
    masked_reconstruction_loss,
    multi_view_nt_xent,
    nt_xent,
    pairwise_group_contrastive,
    simsiam_loss,
)
from mmssl.core.losses.pairwise_group import _balanced_negatives


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def naive_info_nce(q, k, negatives=None, t=0.07):
    """-log(exp(pos/t) / sum exp(all/t)), one query at a time, float64."""
    q, k = _unit(q.double()), _unit(k.double())
    others = k if negatives is None else _unit(negatives.double())
    total = 0.0
    for i in range(q.shape[0]):
        pos = torch.dot(q[i], k[i])
        if negatives is None:
            denom = sum(torch.exp(torch.dot(q[i], others[j]) / t) for j in range(others.shape[0]))
        else:
            denom = torch.exp(pos / t) + sum(
                torch.exp(torch.dot(q[i], others[j]) / t) for j in range(others.shape[0])
            )
        total = total - torch.log(torch.exp(pos / t) / denom)
    return total / q.shape[0]


def naive_nt_xent(z1, z2, t=0.5):
    """SimCLR eq. 1 with an explicit loop over the 2N anchors, float64."""
    z = _unit(torch.cat([z1, z2]).double())
    n2 = z.shape[0]
    total = 0.0
    for a in range(n2):
        pos = (a + n2 // 2) % n2
        denom = sum(torch.exp(torch.dot(z[a], z[b]) / t) for b in range(n2) if b != a)
        total = total - torch.log(torch.exp(torch.dot(z[a], z[pos]) / t) / denom)
    return total / n2


def test_info_nce_in_batch_matches_loop():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for t in (0.07, 0.5):
        assert info_nce(q, k, temperature=t).item() == pytest.approx(
            naive_info_nce(q, k, t=t).item(), rel=1e-5
        )


def test_info_nce_with_negatives_matches_loop():
    g = torch.Generator().manual_seed(1)
    q, k, neg = (
        torch.randn(5, 8, generator=g),
        torch.randn(5, 8, generator=g),
        torch.randn(11, 8, generator=g),
    )
    got = info_nce(q, k, negatives=neg, temperature=0.2)
    assert got.item() == pytest.approx(naive_info_nce(q, k, neg, t=0.2).item(), rel=1e-5)


def test_info_nce_gradient_matches_loop():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    (gq, gk) = torch.autograd.grad(info_nce(q, k, temperature=0.3), (q, k))
    (rq, rk) = torch.autograd.grad(naive_info_nce(q, k, t=0.3), (q, k))
    torch.testing.assert_close(gq.double(), rq, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gk.double(), rk, rtol=1e-5, atol=1e-6)


def test_nt_xent_matches_loop():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    for t in (0.1, 0.5):
        assert nt_xent(z1, z2, temperature=t).item() == pytest.approx(
            naive_nt_xent(z1, z2, t).item(), rel=1e-5
        )


def naive_multi_view_nt_xent(views, t=0.5):
    """SimCLR eq. 1 over every ordered pair of two views of one sample, loops over anchors and
    positives, float64; the denominator holds every view in the batch but the anchor."""
    z = _unit(torch.cat(views).double())
    n = views[0].shape[0]
    total, pairs = 0.0, 0
    for a in range(z.shape[0]):
        denom = sum(torch.exp(torch.dot(z[a], z[b]) / t) for b in range(z.shape[0]) if b != a)
        for p in range(a % n, z.shape[0], n):
            if p != a:
                total = total - torch.log(torch.exp(torch.dot(z[a], z[p]) / t) / denom)
                pairs += 1
    return total / pairs


def test_multi_view_nt_xent_matches_loop_and_is_nt_xent_for_two_views():
    g = torch.Generator().manual_seed(7)
    views = [torch.randn(4, 6, generator=g) for _ in range(4)]
    for t in (0.1, 0.5):
        for v in (2, 3, 4):
            assert multi_view_nt_xent(views[:v], temperature=t).item() == pytest.approx(
                naive_multi_view_nt_xent(views[:v], t).item(), rel=1e-5
            ), (t, v)
        assert multi_view_nt_xent(views[:2], temperature=t).item() == pytest.approx(
            nt_xent(views[0], views[1], temperature=t).item(), rel=1e-6
        )
    # a mean over all pairs: the order of the views does not matter
    shuffled = [views[2], views[0], views[3], views[1]]
    assert multi_view_nt_xent(shuffled).item() == pytest.approx(multi_view_nt_xent(views).item(), rel=1e-6)
    with pytest.raises(ValueError, match="at least two views"):
        multi_view_nt_xent(views[:1])
    with pytest.raises(ValueError, match="same number of samples"):
        multi_view_nt_xent([views[0], views[1][:3]])


def test_nt_xent_is_bit_for_bit_the_masked_cross_entropy():
    """The two-view loss equals SimCLR eq. 1 written as one cross-entropy over self-masked logits (the
    form the SimCLR figures were trained with): the same loss and gradients, bit for bit."""
    g = torch.Generator().manual_seed(8)
    for n, d in ((4, 8), (64, 128)):
        z1 = torch.randn(n, d, generator=g, requires_grad=True)
        z2 = torch.randn(n, d, generator=g, requires_grad=True)
        a = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
        logits = a @ a.t() / 0.2
        logits[torch.arange(2 * n), torch.arange(2 * n)] = float("-inf")
        ref = torch.nn.functional.cross_entropy(logits, torch.arange(2 * n).roll(n))
        got = nt_xent(z1, z2, temperature=0.2)
        assert torch.equal(got, ref)
        for x, y in zip(torch.autograd.grad(got, [z1, z2]), torch.autograd.grad(ref, [z1, z2])):
            assert torch.equal(x, y)


def test_nt_xent_matches_lightly():
    loss_mod = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    ref = loss_mod.NTXentLoss(temperature=0.5)(z1, z2)
    assert nt_xent(z1, z2, temperature=0.5).item() == pytest.approx(ref.item(), rel=1e-5)


def test_nt_xent_lower_when_views_agree():
    g = torch.Generator().manual_seed(5)
    z1 = torch.randn(16, 32, generator=g)
    agree = nt_xent(z1, z1 + 0.05 * torch.randn(16, 32, generator=g))
    random = nt_xent(z1, torch.randn(16, 32, generator=g))
    assert agree < random
    # perfectly aligned views at a low temperature approach the lower bound 0
    assert nt_xent(torch.eye(8), torch.eye(8), temperature=0.05) < 1e-3


def test_contrastive_losses_stay_fp32_under_autocast():
    g = torch.Generator().manual_seed(6)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = nt_xent(z1, z2), info_nce(z1, z2)
    assert a.dtype == torch.float32 and b.dtype == torch.float32
    assert a.item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-6)
    assert b.item() == pytest.approx(info_nce(z1, z2).item(), rel=1e-6)


def test_byol_regression_values_and_stop_gradient():
    g = torch.Generator().manual_seed(7)
    z = torch.randn(6, 5, generator=g)
    assert byol_regression(3.0 * z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_regression(-z, z).item() == pytest.approx(4.0, abs=1e-6)
    # equals the squared distance of the unit vectors (BYOL eq. 2)
    p = torch.randn(6, 5, generator=g)
    ref = (_unit(p) - _unit(z)).pow(2).sum(dim=1).mean()
    assert byol_regression(p, z).item() == pytest.approx(ref.item(), rel=1e-5)

    p = p.clone().requires_grad_(True)
    zz = z.clone().requires_grad_(True)
    byol_regression(p, zz).backward()
    assert zz.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_simsiam_loss():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(4, 3, generator=g)
    assert simsiam_loss(2.0 * z, z).item() == pytest.approx(-1.0, abs=1e-6)
    assert simsiam_loss(-z, z).item() == pytest.approx(1.0, abs=1e-6)
    zz = z.clone().requires_grad_(True)
    p = torch.randn(4, 3, generator=g, requires_grad=True)
    simsiam_loss(p, zz).backward()
    assert zz.grad is None and p.grad is not None


def test_pairwise_group_hand_computed():
    s = math.sqrt(3.0) / 2.0
    # points 0 and 1 share group 0 at 60 degrees; point 2 (group 1) is orthogonal to 0, 30 degrees from 1;
    # point 3 is ignored (group -1) although it would add a positive-cost pair with everything.
    emb = torch.tensor([[2.0, 0.0], [0.5, s], [0.0, 3.0], [-1.0, -1.0]])
    groups = torch.tensor([0, 0, 1, -1])
    # positive (0,1): 1 - 0.5; negatives (0,2): relu(0 - 0.5) = 0, (1,2): relu(s - 0.5)
    expected = 0.5 + (0.0 + (s - 0.5)) / 2.0
    got = pairwise_group_contrastive(emb, groups, margin=0.5, balance=False)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def naive_pairwise(emb, groups, margin):
    pos, neg = [], []
    for b in range(emb.shape[0]):
        f = _unit(emb[b].double())
        for i in range(emb.shape[1]):
            for j in range(emb.shape[1]):
                if i == j or groups[b, i] < 0 or groups[b, j] < 0:
                    continue
                c = torch.dot(f[i], f[j]).item()
                if groups[b, i] == groups[b, j]:
                    pos.append(1.0 - c)
                else:
                    neg.append(max(0.0, c - margin))
    return sum(pos) / len(pos) + sum(neg) / len(neg)


def test_pairwise_group_matches_loop_unbalanced():
    g = torch.Generator().manual_seed(9)
    emb = torch.randn(3, 7, 4, generator=g)
    groups = torch.randint(-1, 3, (3, 7), generator=g)
    got = pairwise_group_contrastive(emb, groups, margin=0.2, balance=False)
    assert got.item() == pytest.approx(naive_pairwise(emb, groups, 0.2), rel=1e-5)


def test_pairwise_group_prefers_embeddings_that_respect_groups():
    g = torch.Generator().manual_seed(10)
    groups = torch.randint(0, 4, (4, 32), generator=g)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    good = centres[groups] + 0.05 * torch.randn(4, 32, 16, generator=g)
    bad = centres[torch.randint(0, 4, (4, 32), generator=g)] + 0.05 * torch.randn(4, 32, 16, generator=g)
    for balance in (True, False):
        lg = pairwise_group_contrastive(
            good, groups, balance=balance, generator=torch.Generator().manual_seed(0)
        )
        lb = pairwise_group_contrastive(
            bad, groups, balance=balance, generator=torch.Generator().manual_seed(0)
        )
        assert lg < lb


def test_balanced_negatives_keep_exactly_as_many_as_positives():
    g = torch.Generator().manual_seed(11)
    neg = torch.rand(5, 40, generator=g) < 0.6
    num_keep = torch.tensor([0, 3, 10, 100, 7])
    kept = _balanced_negatives(neg, num_keep, torch.Generator().manual_seed(1))
    assert not (kept & ~neg).any()  # only negatives are kept
    assert kept.sum(dim=1).tolist() == torch.minimum(num_keep, neg.sum(dim=1)).tolist()


def test_masked_reconstruction_ignores_unmasked_tokens():
    g = torch.Generator().manual_seed(12)
    pred, target = torch.randn(2, 6, 5, generator=g), torch.randn(2, 6, 5, generator=g)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 0, 0, 1, 1, 0]])
    loss = masked_reconstruction_loss(pred, target, mask)
    changed = pred.clone()
    changed[mask == 0] += 10.0
    assert masked_reconstruction_loss(changed, target, mask).item() == pytest.approx(loss.item(), rel=1e-6)
    # and it is the mean over masked tokens of the per-token MSE
    ref = ((pred - target) ** 2).mean(-1)[mask.bool()].mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_masked_reconstruction_norm_target_matches_manual():
    g = torch.Generator().manual_seed(13)
    pred, target = torch.randn(2, 4, 6, generator=g), 3.0 + 2.0 * torch.randn(2, 4, 6, generator=g)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 0]])
    p = target.shape[-1]
    mean = target.sum(-1, keepdim=True) / p
    var = ((target - mean) ** 2).sum(-1, keepdim=True) / (p - 1)  # unbiased, as MAE's norm_pix_loss
    manual = (target - mean) / torch.sqrt(var + 1e-6)
    got = masked_reconstruction_loss(pred, target, mask, norm_target=True)
    ref = masked_reconstruction_loss(pred, manual, mask, norm_target=False)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert got.item() != pytest.approx(masked_reconstruction_loss(pred, target, mask).item(), rel=1e-2)
