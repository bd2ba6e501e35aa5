"""The five methods' losses and phase logic, on vector stand-ins (no BatchNorm, deterministic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.semi.data_distillation import (
    DataDistillation,
    DataDistillationOptions,
    TTATransform,
    ensemble_predictions,
    image_transforms,
)
from mmssl.semi.entropy_min import EntropyMinimisation, EntropyMinOptions
from mmssl.semi.fixmatch import FixMatch, FixMatchOptions
from mmssl.semi.mean_teacher import MeanTeacher, MeanTeacherOptions
from mmssl.semi.options import OODOptions, ScheduledOODOptions
from mmssl.semi.pool import UnlabelledPool
from mmssl.semi.self_training import SelfTraining, SelfTrainingOptions, round_boundaries
from tests.semi._helpers import VecEncoder, bundle, clusters, far_points

D, B, MU = 8, 4, 3


def _batch(seed: int = 0, pool_size: int = 40) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = 3 * torch.randn(B, MU, D, generator=g)
    return {
        "x_l": torch.randn(B, D, generator=g),
        "y_l": torch.randint(0, 3, (B,), generator=g),
        "u_weak": u,
        "u_strong": u + 0.5 * torch.randn(B, MU, D, generator=g),
        "u_index": torch.randperm(pool_size, generator=g)[: B * MU].view(B, MU),
    }


def _data(pool_size: int = 40, classes: int = 3):
    g = torch.Generator().manual_seed(5)
    pool = 3 * torch.randn(pool_size, D, generator=g)
    labelled = torch.randn(12, D, generator=g)
    return bundle(pool, labelled, torch.arange(12) % classes, num_classes=classes)


def _seeded_encoder() -> VecEncoder:
    torch.manual_seed(0)
    return VecEncoder(D)


# ----------------------------------------------------------------------------------------- FixMatch


def test_fixmatch_unlabelled_loss_uses_confident_weak_pseudo_labels_on_the_strong_view():
    method = FixMatch(_seeded_encoder(), _data(), FixMatchOptions(threshold=0.8, ema_decay=0.99))
    batch = _batch()
    out = method(batch)
    with torch.no_grad():
        weak = method.logits(batch["u_weak"].flatten(0, 1))
        strong = method.logits(batch["u_strong"].flatten(0, 1))
        labelled = method.logits(batch["x_l"])
    probs = torch.softmax(weak, 1).numpy()
    mask = probs.max(1) >= 0.8
    assert 0 < mask.sum() < mask.size  # some pass, some do not
    ce = F.cross_entropy(strong, torch.as_tensor(probs.argmax(1)), reduction="none").numpy()
    expected_u = (ce * mask).sum() / mask.size
    assert out["mask_rate"].item() == pytest.approx(mask.mean())
    assert out["loss_u"].item() == pytest.approx(expected_u, rel=1e-5)
    expected = F.cross_entropy(labelled, batch["y_l"]).item() + expected_u
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_unlabelled_weight_zero_is_supervised_only_for_every_method():
    batch = {"x_l": torch.randn(B, D), "y_l": torch.randint(0, 3, (B,))}  # no unlabelled views needed
    methods = [
        (FixMatch, FixMatchOptions),
        (MeanTeacher, MeanTeacherOptions),
        (EntropyMinimisation, EntropyMinOptions),
        (SelfTraining, SelfTrainingOptions),
        (DataDistillation, DataDistillationOptions),
    ]
    for cls, options in methods:
        method = cls(_seeded_encoder(), _data(), options(unlabelled_weight=0.0))
        out = method(batch)
        assert out["loss"].item() == pytest.approx(
            F.cross_entropy(method.logits(batch["x_l"]), batch["y_l"]).item()
        )


def test_fixmatch_waits_for_the_ood_guard():
    method = FixMatch(
        _seeded_encoder(), _data(), FixMatchOptions(threshold=0.0, ood=ScheduledOODOptions(guard="energy"))
    )
    out = method(_batch())
    assert out["mask_rate"].item() == 0.0 and out["loss_u"].item() == 0.0
    method.on_train_step_end(1, 5)  # ood_start 0.2 of 5 steps -> scored after step 1
    assert int(method.ood_refreshes) == 1
    assert method(_batch())["mask_rate"].item() > 0.0


# ------------------------------------------------------------------------------------- Mean Teacher


def test_mean_teacher_rampup_and_ema_schedule():
    method = MeanTeacher(_seeded_encoder(), _data(), MeanTeacherOptions(unlabelled_weight=100.0, rampup=0.5))
    total = 100
    for step, t in [(0, 0.0), (25, 0.5), (50, 1.0), (80, 1.0)]:
        method.progress.fill_(step / total)
        assert method.consistency_weight() == pytest.approx(100.0 * math.exp(-5.0 * (1.0 - t) ** 2))
    total = 10_000
    assert method.ema_momentum(0, total) == 0.0  # 1 - 1/(k+1): the teacher starts as a copy
    assert method.ema_momentum(9, total) == pytest.approx(0.9)
    assert method.ema_momentum(2000, total) == pytest.approx(0.99)  # during the ramp-up
    assert method.ema_momentum(8000, total) == pytest.approx(0.999)  # after it


def test_mean_teacher_consistency_is_softmax_mse_against_the_teacher():
    method = MeanTeacher(_seeded_encoder(), _data(), MeanTeacherOptions(unlabelled_weight=10.0, rampup=0.0))
    batch = _batch()
    same = dict(batch, u_strong=batch["u_weak"])
    assert method(same)["loss_u"].item() == pytest.approx(0.0, abs=1e-12)  # teacher == student at init
    with torch.no_grad():
        method.head.weight.add_(1.0)  # move the student away from its teacher
    out = method(batch)
    with torch.no_grad():
        p_s = torch.softmax(method.logits(batch["u_strong"].flatten(0, 1)), 1)
        p_t = torch.softmax(method.classify(method.ema.module, batch["u_weak"].flatten(0, 1)), 1)
    assert out["loss_u"].item() == pytest.approx(((p_s - p_t) ** 2).mean().item(), rel=1e-5)


# ---------------------------------------------------------------------------------------- EntMin


def test_entropy_term_is_minus_sum_p_log_p_of_unlabelled_predictions():
    method = EntropyMinimisation(
        _seeded_encoder(), _data(), EntropyMinOptions(unlabelled_weight=0.5, rampup=0.0)
    )
    batch = _batch()
    out = method(batch)
    logits = method.logits(batch["u_weak"].flatten(0, 1)).detach().double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -(p * np.log(p)).sum(1).mean()
    assert out["entropy_u"].item() == pytest.approx(expected, rel=1e-5)
    labelled = F.cross_entropy(method.logits(batch["x_l"]), batch["y_l"]).item()
    assert out["loss"].item() == pytest.approx(labelled + 0.5 * expected, rel=1e-5)


# ---------------------------------------------------------------------------------- self-training


@pytest.mark.parametrize("selection", ["confident", "all", "weighted"])
def test_self_training_pseudo_labels_the_pool_at_each_round_boundary(selection):
    data = _data()
    method = SelfTraining(
        _seeded_encoder(), data, SelfTrainingOptions(rounds=2, selection=selection, threshold=0.7)
    )
    total = 6
    assert round_boundaries(total, 3) == [2, 4]
    method.on_train_step_end(1, total)
    assert int(method.phase) == 0 and not method.pseudo_weight.any()
    method.on_train_step_end(2, total)
    assert int(method.phase) == 1
    with torch.no_grad():
        probs = torch.softmax(method.logits(data.extra(UnlabelledPool, "test").dataset.x), 1)
    conf, labels = probs.max(1)
    assert torch.equal(method.pseudo_label, labels)
    expected = {"confident": (conf >= 0.7).float(), "all": torch.ones_like(conf), "weighted": conf}[selection]
    assert torch.allclose(method.pseudo_weight, expected)
    # The unlabelled term: sum_u w_u CE(f(u), yhat_u) / (B * mu).
    batch = _batch()
    out = method(batch)
    idx = batch["u_index"].flatten()
    ce = F.cross_entropy(method.logits(batch["u_weak"].flatten(0, 1)), labels[idx], reduction="none")
    assert out["loss_u"].item() == pytest.approx((ce * expected[idx]).sum().item() / idx.numel(), rel=1e-5)
    method.on_train_step_end(4, total)
    assert int(method.phase) == 2


def test_self_training_reinit_student_and_guard():
    labelled, labels = clusters(10, dim=D)
    pool = torch.cat([clusters(20, dim=D, seed=3)[0], far_points(5, dim=D)])
    method = SelfTraining(
        VecEncoder(D),
        bundle(pool, labelled, labels, num_classes=2),
        SelfTrainingOptions(rounds=1, selection="all", reinit_student=True, ood=OODOptions(guard="knn")),
    )
    init = {k: v.clone() for k, v in method.student().state_dict().items()}
    with torch.no_grad():
        method.encoder.net.weight.mul_(1.5)
        method.head.weight.add_(0.3)
    method.on_train_step_end(2, 4)  # the only boundary
    assert int(method.phase) == 1
    for k, v in method.student().state_dict().items():
        assert torch.equal(v, init[k]), k
    assert not method.ood_keep[-5:].any()  # the far points are dropped ...
    assert not method.pseudo_weight[-5:].any()  # ... and get no pseudo-label weight
    assert method.pseudo_weight[:-5].sum() >= 0.9 * 40


def test_no_phase_switch_when_supervised_only():
    method = SelfTraining(_seeded_encoder(), _data(), SelfTrainingOptions(rounds=2, unlabelled_weight=0.0))
    for step in range(1, 7):
        method.on_train_step_end(step, 6)
    assert int(method.phase) == 0


# ------------------------------------------------------------------------------ data distillation


class PixelClassifier(nn.Module):
    """Per-pixel logits from a 1x1 convolution: flip-equivariant, f(flip x) = flip f(x)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_ensembling_flipped_dense_predictions_maps_them_back():
    model = PixelClassifier()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    direct = torch.softmax(model(x), 1)
    with torch.no_grad():
        ens = ensemble_predictions(model, x, image_transforms(flips=True, scales=[1.0]))
    assert torch.allclose(ens, direct, atol=1e-6)
    assert torch.equal(ens.argmax(1), direct.argmax(1))
    # Without mapping back, the flipped prediction would be mirrored: the labels would differ.
    naive = (direct + torch.softmax(model(x.flip(-1)), 1)) / 2
    assert not torch.equal(naive.argmax(1), direct.argmax(1))


def test_scaled_dense_predictions_come_back_at_the_original_size():
    model = PixelClassifier()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ens = ensemble_predictions(model, x, image_transforms(flips=True, scales=[0.5, 1.0, 2.0]))
    assert ens.shape == (2, 4, 8, 8)
    assert torch.allclose(ens.sum(1), torch.ones(2, 8, 8), atol=1e-5)
    t = TTATransform(flip=True, scale=2.0)
    assert t.apply(x).shape == (2, 3, 16, 16)


def test_flip_invariant_classifier_gets_the_same_label_from_the_ensemble():
    pixel = PixelClassifier()

    def classifier(z: torch.Tensor) -> torch.Tensor:  # global average pool: invariant to flips
        return pixel(z).mean(dim=(2, 3))

    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ens = ensemble_predictions(classifier, x, image_transforms(flips=True, scales=[1.0]))
        direct = torch.softmax(classifier(x), 1)
    assert torch.allclose(ens, direct, atol=1e-6)


def test_pool_prediction_restores_each_submodule_mode():
    encoder = VecEncoder(D)
    encoder.bn = nn.BatchNorm1d(D)  # a mode-dependent layer (unused by forward, but its flag counts)
    method = FixMatch(encoder, _data(), FixMatchOptions(ema_decay=0.9))
    for mode in (False, True):
        method.train(mode)
        method.predict(method.pool, method.student())
        method.predict(method.pool)  # the EMA model
        assert all(m.training == mode for m in method.modules())
