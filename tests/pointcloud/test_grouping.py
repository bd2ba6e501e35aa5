"""Point groups (Point-MAE tokens): farthest point sampling and k-NN groups against brute-force loops, and
inverse-distance interpolation back to the points against its formula."""

from __future__ import annotations

import pytest
import torch

from mmssl.modalities.pointcloud.encoders import farthest_point_sample
from mmssl.modalities.pointcloud.grouping import group_points, interpolate_to_points


def _fps_brute_force(xyz: torch.Tensor, m: int) -> list[int]:
    """Start at the point farthest from the centroid; then repeatedly the point whose distance to its
    nearest picked point is largest (plain loops over the points)."""
    pts = [p.tolist() for p in xyz]
    centroid = [sum(c) / len(pts) for c in zip(*pts)]

    def d2(p, q) -> float:
        return sum((x - y) ** 2 for x, y in zip(p, q))

    picked = [max(range(len(pts)), key=lambda i: d2(pts[i], centroid))]
    while len(picked) < m:
        picked.append(max(range(len(pts)), key=lambda i: min(d2(pts[i], pts[j]) for j in picked)))
    return picked


def test_fps_picks_the_farthest_point_at_each_step() -> None:
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(3, 60, 3, generator=g)  # continuous coordinates: no distance ties
    got = farthest_point_sample(xyz, 12)
    for b in range(3):
        assert got[b].tolist() == _fps_brute_force(xyz[b], 12)
        assert len(set(got[b].tolist())) == 12  # distinct


def test_fps_distinct_even_with_duplicate_points() -> None:
    xyz = torch.rand(1, 10, 3, generator=torch.Generator().manual_seed(1))
    xyz = torch.cat([xyz, xyz], dim=1)  # every point twice
    assert len(set(farthest_point_sample(xyz, 10)[0].tolist())) == 10


def test_knn_groups_equal_brute_force_neighbours() -> None:
    g = torch.Generator().manual_seed(2)
    xyz = torch.rand(2, 50, 3, generator=g)
    groups = group_points(xyz, num_groups=8, group_size=5)
    assert groups.centres.shape == (2, 8, 3) and groups.neighbourhoods.shape == (2, 8, 5, 3)
    for b in range(2):
        assert groups.centre_index[b].tolist() == _fps_brute_force(xyz[b], 8)
        for gi, c in enumerate(groups.centre_index[b].tolist()):
            dists = [float(((xyz[b, i] - xyz[b, c]) ** 2).sum()) for i in range(50)]
            nearest = sorted(range(50), key=lambda i: dists[i])[:5]
            assert groups.index[b, gi].tolist() == nearest
            torch.testing.assert_close(groups.neighbourhoods[b, gi], xyz[b, nearest] - xyz[b, c])
    assert torch.equal(groups.neighbourhoods[:, :, 0], torch.zeros(2, 8, 3))  # the centre is its own nearest


def test_grouping_does_not_depend_on_point_order() -> None:
    g = torch.Generator().manual_seed(3)
    xyz = torch.rand(1, 40, 3, generator=g)
    perm = torch.randperm(40, generator=g)
    a, b = group_points(xyz, 6, 4), group_points(xyz[:, perm], 6, 4)
    torch.testing.assert_close(a.centres, b.centres)
    torch.testing.assert_close(a.neighbourhoods, b.neighbourhoods)


def test_group_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="cannot make"):
        group_points(torch.rand(1, 10, 3), num_groups=11, group_size=3)
    with pytest.raises(ValueError, match="B, N, 3"):
        group_points(torch.rand(10, 3), 2, 2)


def test_interpolation_matches_its_formula_and_reproduces_centres() -> None:
    g = torch.Generator().manual_seed(4)
    points, centres = torch.rand(2, 20, 3, generator=g), torch.rand(2, 6, 3, generator=g)
    feats = torch.randn(2, 6, 5, generator=g)
    out = interpolate_to_points(points, centres, feats)
    for b in range(2):
        for n in range(20):
            d = ((centres[b] - points[b, n]) ** 2).sum(-1).sqrt()
            nearest = d.argsort()[:3]
            w = 1.0 / (d[nearest] ** 2 + 1e-8)
            want = (w[:, None] * feats[b, nearest]).sum(0) / w.sum()
            torch.testing.assert_close(out[b, n], want, rtol=1e-4, atol=1e-5)
    at_centres = interpolate_to_points(centres, centres, feats)
    torch.testing.assert_close(at_centres, feats, rtol=1e-4, atol=1e-4)
    constant = interpolate_to_points(points, centres, torch.ones(2, 6, 5))
    torch.testing.assert_close(constant, torch.ones(2, 20, 5))
