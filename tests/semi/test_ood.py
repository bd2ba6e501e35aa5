"""The OOD guard: score definitions, and that it drops injected out-of-domain samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmssl.semi.base import SemiMethod as _SemiMethod
from mmssl.semi.ood import OODGuard, energy_score, knn_distance_score, max_softmax_score
from mmssl.semi.options import OODOptions, SemiOptions
from tests.semi._helpers import VecEncoder, bundle, clusters, far_points


class SemiMethod(_SemiMethod):
    """The shared base with a supervised-only loss: these tests exercise only the guard plumbing."""

    def semi_loss(self, batch):
        loss = self.supervised_loss(batch)
        return {"loss": loss, "loss_x": loss.detach()}


def test_energy_is_minus_t_logsumexp():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    z = logits.numpy().astype(np.float64)
    for t in (1.0, 2.0):
        expected = -t * np.log(np.exp(z / t).sum(axis=1))
        np.testing.assert_allclose(energy_score(logits, t).numpy(), expected, rtol=1e-5)


def test_max_softmax_score_is_one_minus_confidence():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    expected = [0.5, 1.0 / (1.0 + np.exp(10.0))]
    np.testing.assert_allclose(max_softmax_score(logits).numpy(), expected, rtol=1e-3, atol=1e-7)


def test_knn_distance_is_kth_cosine_distance_and_excludes_self():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = torch.tensor([[2.0, 0.0]])
    # cosine similarities 1, 0, 1/sqrt 2 -> sorted 1, .707, 0 -> distances 0, .293, 1
    assert knn_distance_score(q, ref, k=1).item() == pytest.approx(0.0, abs=1e-6)
    assert knn_distance_score(q, ref, k=2).item() == pytest.approx(1 - 2**-0.5, rel=1e-5)
    # Leave-one-out on the reference itself: sample 0's nearest other point is [1, 1].
    loo = knn_distance_score(ref, ref, k=1, exclude_self=True)
    assert loo[0].item() == pytest.approx(1 - 2**-0.5, rel=1e-5)


def _constructed_case():
    labelled, labels = clusters(30, seed=0)
    in_domain, _ = clusters(100, seed=3)
    ood = far_points(20)
    pool = torch.cat([in_domain, ood])
    is_ood = torch.cat([torch.zeros(200, dtype=torch.bool), torch.ones(20, dtype=torch.bool)])
    return labelled, labels, pool, is_ood


@pytest.mark.parametrize("quantile", [0.95, 1.0])
def test_knn_guard_drops_injected_far_points(quantile):
    labelled, _, pool, is_ood = _constructed_case()
    result = OODGuard("knn", quantile=quantile, k=5)(unlabelled_features=pool, labelled_features=labelled)
    assert not result.keep[is_ood].any()  # every injected point is dropped
    assert result.keep[~is_ood].float().mean() >= 0.9  # nearly all in-domain points are kept
    assert result.num_dropped == int((~result.keep).sum())


def test_absolute_threshold_is_used_as_given():
    labelled, _, pool, is_ood = _constructed_case()
    result = OODGuard("knn", threshold=0.5)(unlabelled_features=pool, labelled_features=labelled)
    assert result.threshold == 0.5
    assert torch.equal(result.keep, result.scores <= 0.5)
    assert not result.keep[is_ood].any() and result.keep[~is_ood].all()


@pytest.mark.parametrize("kind", ["energy", "max_softmax", "knn"])
def test_method_guard_drops_injected_samples_through_the_pool(kind):
    """End to end through SemiMethod: predict pool + labelled, score, store ``ood_keep``.

    The classifier's weights are the class centres, so in-domain points get one large logit (low
    energy, high confidence) and the far points (orthogonal directions) near-zero logits.
    """
    labelled, labels, pool, is_ood = _constructed_case()
    method = SemiMethod(
        VecEncoder(16), bundle(pool, labelled, labels), SemiOptions(ood=OODOptions(kind, quantile=0.95))
    )
    with torch.no_grad():
        method.head.weight.copy_(torch.stack([labelled[labels == c].mean(0) for c in (0, 1)]))
        method.head.bias.zero_()
    assert not method.ood_keep.any()  # nothing trusted before the guard has scored the pool
    result = method.refresh_ood_guard()
    assert result is not None
    assert not method.ood_keep[is_ood].any()
    # Confidence saturates for in-domain points (many ties near 0), so the labelled 95% quantile
    # leaves a few more in-domain points out than 5%.
    assert method.ood_keep[~is_ood].float().mean() >= 0.8
    assert int(method.ood_refreshes) == 1
    # keep_weights masks unlabelled samples by pool position.
    idx = torch.tensor([[0, 200], [1, 219]])
    assert method.keep_weights(idx).tolist() == [
        float(method.ood_keep[0]),
        0.0,
        float(method.ood_keep[1]),
        0.0,
    ]


def test_guard_off_keeps_everything_and_rejects_unknown_kinds():
    labelled, labels, pool, _ = _constructed_case()
    method = SemiMethod(VecEncoder(16), bundle(pool, labelled, labels), SemiOptions())
    assert method.ood_keep.all() and method.refresh_ood_guard() is None
    with pytest.raises(ValueError, match="ood_guard"):
        OODGuard("mahalanobis")
