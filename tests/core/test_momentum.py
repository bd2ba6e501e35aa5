"""EMA schedule, EMA teacher, momentum queue and memory bank against their defining formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.core.momentum import EMATeacher, MemoryBank, MomentumQueue, cosine_momentum


def test_cosine_momentum_endpoints_and_shape():
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx((0.996 + 1.0) / 2)
    assert cosine_momentum(0, 10, base=0.9, final=0.99) == pytest.approx(0.9)
    assert cosine_momentum(10, 10, base=0.9, final=0.99) == pytest.approx(0.99)
    # BYOL's formula at an arbitrary step
    k, big_k = 37, 120
    assert cosine_momentum(k, big_k) == pytest.approx(1 - 0.004 * (math.cos(math.pi * k / big_k) + 1) / 2)
    values = [cosine_momentum(s, 20) for s in range(21)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert cosine_momentum(500, 100) == pytest.approx(1.0)  # clamped past the end


def test_ema_teacher_update_matches_formula():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    teacher = EMATeacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    old = [p.detach().clone() for p in teacher.module.parameters()]

    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()
    student(torch.randn(8, 4))  # changes BN running statistics
    teacher.update(student, momentum=0.9)

    for t, o, s in zip(teacher.module.parameters(), old, student.parameters()):
        torch.testing.assert_close(t, 0.9 * o + 0.1 * s.detach())
    torch.testing.assert_close(teacher.module[1].running_mean, student[1].running_mean)
    assert int(teacher.module[1].num_batches_tracked) == 1

    teacher.update(student, momentum=0.0)  # momentum 0 copies the student
    for t, s in zip(teacher.module.parameters(), student.parameters()):
        torch.testing.assert_close(t, s.detach())
    out = teacher(torch.randn(8, 4))
    assert not out.requires_grad


def test_queue_wraps_and_keeps_newest_keys():
    torch.manual_seed(0)
    q = MomentumQueue(dim=3, size=5)
    torch.testing.assert_close(q.queue.norm(dim=1), torch.ones(5))
    keys = 2.0 * torch.randn(9, 3)
    for chunk in keys.split(3):  # 3 does not divide 5: the third batch wraps around
        q.enqueue(chunk)
    expected = F.normalize(keys, dim=1)
    for n in range(4, 9):  # the newest five keys, key n at slot n % 5
        torch.testing.assert_close(q.queue[n % 5], expected[n])
    assert int(q.ptr) == 9 % 5

    neg = q.negatives
    q.enqueue(torch.randn(2, 3))
    assert not torch.equal(neg, q.queue)  # the returned negatives are a copy

    many = torch.randn(12, 3)
    q.enqueue(many)  # more keys than slots: only the newest five survive
    assert {tuple(r) for r in q.queue.round(decimals=5).tolist()} == {
        tuple(r) for r in F.normalize(many[-5:], dim=1).round(decimals=5).tolist()
    }


def test_memory_bank_update_formula_and_sampling():
    torch.manual_seed(0)
    bank = MemoryBank(num_samples=10, dim=4, momentum=0.3)
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(10))
    old = bank.features.clone()
    idx = torch.tensor([2, 7])
    feats = 5.0 * torch.randn(2, 4)
    bank.update(idx, feats)
    mixed = 0.3 * old[idx] + 0.7 * feats / feats.norm(dim=1, keepdim=True)
    torch.testing.assert_close(bank.features[idx], mixed / mixed.norm(dim=1, keepdim=True))
    untouched = torch.tensor([i for i in range(10) if i not in (2, 7)])
    torch.testing.assert_close(bank.features[untouched], old[untouched])
    torch.testing.assert_close(bank.get(idx), bank.features[idx])

    a = bank.sample_negatives(6, generator=torch.Generator().manual_seed(3))
    b = bank.sample_negatives(6, generator=torch.Generator().manual_seed(3))
    assert a.shape == (6, 4) and torch.equal(a, b)
    # every sample is a stored row
    assert ((a[:, None, :] - bank.features[None]).abs().sum(-1).min(dim=1).values < 1e-6).all()
