"""DAVIS J and F against values worked out by hand on small masks."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.modalities.video.davis_metrics import (
    bound_pixels,
    boundary_f_measure,
    boundary_map,
    boundary_precision_recall,
    dilate,
    disk,
    evaluate_sequence,
    region_similarity,
    summarize,
)


def box(h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """Boolean [h, w] with rows r0..r1 and columns c0..c1 (inclusive) set."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def test_region_similarity_hand_values():
    gt = box(6, 6, 1, 2, 1, 3)  # 6 pixels
    pred = box(6, 6, 1, 2, 2, 4)  # 6 pixels, overlap columns 2-3 -> 4 pixels
    assert region_similarity(pred, gt).item() == pytest.approx(4 / 8)
    # Empty prediction and empty ground truth: 1 by convention; one empty: 0.
    empty = torch.zeros(6, 6, dtype=torch.bool)
    assert region_similarity(empty, empty).item() == 1.0
    assert region_similarity(empty, gt).item() == 0.0
    # Void pixels are ignored: voiding the two pred-only pixels (column 4) gives 4 / 6.
    void = box(6, 6, 1, 2, 4, 4)
    assert region_similarity(pred, gt, void).item() == pytest.approx(4 / 6)
    # Batched over leading dims.
    both = region_similarity(torch.stack([pred, gt]), torch.stack([gt, gt]))
    assert both.tolist() == pytest.approx([0.5, 1.0])


def test_boundary_map_of_a_square_is_offset_towards_the_origin():
    seg = box(8, 8, 2, 4, 2, 4)  # 3x3 square
    expected = {(1, c) for c in range(1, 5)} | {(r, 1) for r in range(1, 5)}
    expected |= {(r, 4) for r in range(2, 5)} | {(4, c) for c in range(2, 5)}
    got = {tuple(p) for p in boundary_map(seg).nonzero().tolist()}
    assert got == expected


def test_boundary_map_ignores_the_image_border():
    full = torch.ones(5, 7, dtype=torch.bool)
    assert not boundary_map(full).any()
    left_half = box(5, 6, 0, 4, 0, 2)  # touches top, left and bottom borders
    got = {tuple(p) for p in boundary_map(left_half).nonzero().tolist()}
    assert got == {(r, 2) for r in range(5)}


def test_disk_and_dilation():
    d = disk(2)
    assert d.shape == (5, 5) and int(d.sum()) == 13  # 1 + 4 + 4 + 4 lattice points with r^2 <= 4
    point = torch.zeros(9, 9, dtype=torch.bool)
    point[4, 4] = True
    dil = dilate(point, 2)
    ys, xs = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    assert torch.equal(dil, (ys - 4) ** 2 + (xs - 4) ** 2 <= 4)


def test_bound_pixels_davis_tolerance():
    assert bound_pixels(480, 854) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert bound_pixels(64, 64, bound_th=3) == 3


def test_f_measure_on_a_shifted_square_hand_computed():
    """6x6 square, prediction shifted right by 2 px, tolerance 1 px (4-neighbourhood).

    Both boundaries have 24 pixels. Prediction hits: left edge 4/7 (rows 3, 4, 8, 9 touch the
    ground truth's top / bottom edges), top 5/6, right 0/6, bottom 5/5 -> precision 14/24.
    Ground-truth hits: left 0/7, top 6/6, right 3/6 (rows 4, 8, 9), bottom 5/5 -> recall 14/24.
    """
    gt = box(16, 16, 4, 9, 4, 9)
    pred = box(16, 16, 4, 9, 6, 11)
    assert int(boundary_map(gt).sum()) == 24 and int(boundary_map(pred).sum()) == 24
    p, r = boundary_precision_recall(pred, gt, bound_th=1)
    assert p.item() == pytest.approx(14 / 24)
    assert r.item() == pytest.approx(14 / 24)
    assert boundary_f_measure(pred, gt, bound_th=1).item() == pytest.approx(14 / 24)
    # With a 2-px tolerance every shifted boundary pixel is matched.
    assert boundary_f_measure(pred, gt, bound_th=2).item() == pytest.approx(1.0)


def test_f_measure_degenerate_cases_follow_davis():
    gt = box(10, 10, 2, 6, 2, 6)
    empty = torch.zeros(10, 10, dtype=torch.bool)
    assert boundary_f_measure(gt, gt).item() == 1.0
    p, r = boundary_precision_recall(empty, gt)
    assert (p.item(), r.item()) == (1.0, 0.0)
    p, r = boundary_precision_recall(gt, empty)
    assert (p.item(), r.item()) == (0.0, 1.0)
    assert boundary_f_measure(empty, gt).item() == 0.0
    assert boundary_f_measure(empty, empty).item() == 1.0


def test_evaluate_sequence_skips_first_and_last_frames_and_averages_per_object():
    t, h, w = 4, 12, 12
    gt = torch.zeros(t, h, w, dtype=torch.long)
    gt[:, 1:5, 1:5] = 1
    gt[:, 7:11, 7:11] = 2
    pred = gt.clone()
    pred[1] = 0  # frame 1: both objects missed -> J = F = 0
    pred[3] = 0  # last frame: not scored
    s = evaluate_sequence(pred, gt, name="toy")
    assert s.frames == [1, 2]
    assert s.j.shape == (2, 2)
    assert s.j.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert s.f.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    out = summarize([s])
    assert out["j_mean"] == pytest.approx(0.5)
    assert out["f_mean"] == pytest.approx(0.5)
    assert out["jf_mean"] == pytest.approx(0.5)
    assert out["j_recall"] == pytest.approx(0.5)


def test_evaluate_sequence_void_and_unannotated_frames():
    gt = torch.zeros(5, 8, 8, dtype=torch.long)
    gt[:, 2:6, 2:6] = 1
    gt[2] = -1  # not annotated: left out
    gt[3, 2:6, 5] = 255  # void column: ignored
    pred = gt.clamp(min=0).clone()
    pred[pred == 255] = 0
    pred[2] = 0
    s = evaluate_sequence(pred, gt, num_objects=1)
    assert s.frames == [1, 3]
    assert s.j.flatten().tolist() == [1.0, 1.0]
