"""Two-view point-cloud augmentation: each step checked by a property that must hold."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mmssl.modalities.pointcloud.views import (
    PointCloudView,
    PointViewOptions,
    random_so3,
    region_crop,
    resample,
    two_view_transform,
    up_rotation,
)

ONLY_ROTATION = dict(scale_low=1.0, scale_high=1.0, shift=0.0, jitter_sigma=0.0, crop="none")


def _cloud(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * 2 - 1
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return torch.cat([xyz, normals], dim=-1)


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x.double(), x.double())


def _nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each point of ``a`` to its nearest point of ``b``, by explicit differences (exact
    zeros for copies, which ``torch.cdist``'s matrix-product path does not give)."""
    return (a[:, None] - b[None]).norm(dim=-1).amin(dim=1)


@pytest.mark.parametrize("rotation", ["up", "so3"])
def test_rotation_preserves_pairwise_distances(rotation: str) -> None:
    cloud = _cloud()
    view = PointCloudView(PointViewOptions(rotation=rotation, **ONLY_ROTATION))
    out = view(cloud, generator=torch.Generator().manual_seed(3))
    # No crop and as many points as the input: the view is a permutation of the rotated points, so match
    # points by sorting on the (rotation-invariant) norm before comparing distance matrices.
    order_in, order_out = cloud[:, :3].norm(dim=-1).argsort(), out.norm(dim=-1).argsort()
    torch.testing.assert_close(
        _pairwise(out[order_out]), _pairwise(cloud[order_in, :3]), rtol=1e-5, atol=1e-5
    )
    assert not torch.allclose(out[order_out], cloud[order_in, :3], atol=1e-3)  # it did rotate


def test_up_rotation_keeps_the_up_coordinate_and_is_proper() -> None:
    angles = torch.tensor([0.3, -1.2, 2.5])
    for axis in range(3):
        rot = up_rotation(angles, axis)
        eye = torch.eye(3).expand(3, 3, 3)
        torch.testing.assert_close(rot @ rot.transpose(1, 2), eye, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.linalg.det(rot), torch.ones(3))
        e = torch.zeros(3)
        e[axis] = 1.0
        torch.testing.assert_close(rot @ e, e.expand(3, 3))
    # y-up, right-handed: +90 degrees takes x to -z (the standard R_y).
    torch.testing.assert_close(up_rotation(torch.tensor(torch.pi / 2), 1) @ torch.tensor([1.0, 0, 0]),
                               torch.tensor([0.0, 0, -1]), atol=1e-6, rtol=0)  # fmt: skip


def test_so3_rotations_are_proper_and_spread() -> None:
    g = torch.Generator().manual_seed(0)
    rots = torch.stack([random_so3(g) for _ in range(400)])
    torch.testing.assert_close(rots @ rots.transpose(1, 2), torch.eye(3).expand(400, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rots), torch.ones(400), atol=1e-5, rtol=0)
    # Haar-uniform: a fixed vector goes to a uniform point of the sphere, so the mean is ~0 (~ 1/sqrt(3 n)).
    assert (rots @ torch.tensor([0.0, 0.0, 1.0])).mean(0).norm() < 0.15


def test_scaling_stays_within_range_per_axis() -> None:
    cloud = _cloud()
    opts = PointViewOptions(
        rotation="none", scale_low=0.7, scale_high=1.4, shift=0.0, jitter_sigma=0.0, crop="none"
    )
    g = torch.Generator().manual_seed(1)
    factors = []
    for _ in range(30):
        out = PointCloudView(opts)(cloud, generator=g)
        # Same points (a permutation): per-axis extent ratios are the scale factors.
        ratio = (out.amax(0) - out.amin(0)) / (cloud[:, :3].amax(0) - cloud[:, :3].amin(0))
        factors.append(ratio)
    factors = torch.stack(factors)
    assert factors.min() >= 0.7 - 1e-5 and factors.max() <= 1.4 + 1e-5
    assert (factors[:, 0] - factors[:, 1]).abs().max() > 0.01  # anisotropic: axes differ
    iso = dataclasses.replace(opts, anisotropic=False)
    out = PointCloudView(iso)(cloud, generator=g)
    ratio = (out.amax(0) - out.amin(0)) / (cloud[:, :3].amax(0) - cloud[:, :3].amin(0))
    torch.testing.assert_close(ratio, ratio[:1].expand(3))


def test_region_crop_removes_a_contiguous_ball() -> None:
    xyz = _cloud(80)[:, :3]
    keep, centre = region_crop(xyz, 20, torch.Generator().manual_seed(4))
    removed = sorted(set(range(80)) - set(keep.tolist()))
    assert len(keep) == 60 and len(removed) == 20 and centre in removed
    d = (xyz - xyz[centre]).norm(dim=-1)
    assert d[removed].max() <= d[keep].min()  # every removed point is nearer the centre than every kept one


@pytest.mark.parametrize("crop", ["region", "random", "none"])
@pytest.mark.parametrize("num_points", [None, 40, 100])
def test_counts_are_fixed(crop: str, num_points: int | None) -> None:
    cloud = _cloud(64)
    view = PointCloudView(PointViewOptions(crop=crop, crop_low=0.3, crop_high=0.5, num_points=num_points))
    g = torch.Generator().manual_seed(5)
    shapes = {tuple(view(cloud, generator=g).shape) for _ in range(5)}
    assert shapes == {(num_points or 64, 3)}


def test_resample_keeps_every_point_when_short_and_subsets_when_long() -> None:
    keep = torch.tensor([3, 7, 9, 20])
    g = torch.Generator().manual_seed(6)
    long = resample(keep, 10, g)
    assert set(long.tolist()) == set(keep.tolist()) and len(long) == 10
    short = resample(keep, 3, g)
    assert len(set(short.tolist())) == 3 and set(short.tolist()) <= set(keep.tolist())


def test_cropped_views_come_from_the_cloud_without_jitter() -> None:
    cloud = _cloud(50)
    opts = PointViewOptions(rotation="none", scale_low=1.0, scale_high=1.0, shift=0.0, jitter_sigma=0.0)
    out = PointCloudView(opts)(cloud, generator=torch.Generator().manual_seed(7))
    assert _nearest(out, cloud[:, :3]).max() < 1e-6


def test_jitter_is_clipped() -> None:
    cloud = _cloud(50)
    opts = PointViewOptions(rotation="none", scale_low=1.0, scale_high=1.0, shift=0.0, crop="none",
                            jitter_sigma=1.0, jitter_clip=0.02)  # fmt: skip
    out = PointCloudView(opts)(cloud, generator=torch.Generator().manual_seed(8))
    assert _nearest(out, cloud[:, :3]).max() <= 0.02 * 3**0.5 + 1e-5


def test_normals_follow_rotation_and_anisotropic_scaling() -> None:
    # Points on the plane z = 0.3 x + 0.2 y with its normal: after any view the normals must stay unit and
    # perpendicular to the transformed plane's in-plane directions.
    g = torch.Generator().manual_seed(9)
    xy = torch.rand(40, 2, generator=g)
    xyz = torch.cat([xy, (0.3 * xy[:, :1] + 0.2 * xy[:, 1:])], dim=1)
    n = torch.nn.functional.normalize(torch.tensor([-0.3, -0.2, 1.0]), dim=0).expand(40, 3)
    opts = PointViewOptions(rotation="so3", scale_low=0.5, scale_high=2.0, shift=0.0, jitter_sigma=0.0,
                            crop="none", normals=True)  # fmt: skip
    out = PointCloudView(opts)(torch.cat([xyz, n], dim=1), generator=g)
    assert out.shape == (40, 6)
    torch.testing.assert_close(out[:, 3:].norm(dim=-1), torch.ones(40))
    tangents = out[1:, :3] - out[:1, :3]  # in-plane directions of the transformed plane
    assert (tangents @ out[0, 3:]).abs().max() < 1e-4


def test_two_view_transform_gives_two_different_views() -> None:
    views = two_view_transform()(_cloud())
    assert len(views) == 2 and views[0].shape == views[1].shape == (64, 3)
    assert not torch.allclose(views[0], views[1])


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="rotation"):
        PointViewOptions(rotation="spin")
    with pytest.raises(ValueError, match="crop"):
        PointViewOptions(crop="ball")
    with pytest.raises(ValueError, match="scale"):
        PointViewOptions(scale_low=1.5, scale_high=1.0)
    with pytest.raises(ValueError, match="crop_low"):
        PointViewOptions(crop_high=1.0)
    with pytest.raises(ValueError, match="normals"):
        PointCloudView(PointViewOptions(normals=True))(torch.rand(10, 3))
