"""Point backbones: k-NN graph, EdgeConv algebra, output contract, permutation equivariance."""

from __future__ import annotations

import pytest
import torch

from mmssl.modalities.pointcloud.encoders import (
    EdgeConv,
    ball_query,
    farthest_point_sample,
    gather_points,
    knn_indices,
)
from mmssl.registry import ENCODERS

TINY = {
    "dgcnn": {"k": 8, "edge_dims": (16, 16), "global_dim": 32, "point_dims": (32, 24), "dropout": 0.5},
    "pointnet2": {
        "num_centres": (32, 8),
        "radii": (0.3, 0.6),
        "num_samples": (8, 8),
        "sa_dims": ((16,), (32,)),
        "global_dims": (32,),
        "fp_dims": ((32,), (32,), (24,)),
    },
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registered_as_pointcloud_encoders() -> None:
    assert {"dgcnn", "pointnet2"} <= set(ENCODERS.names("pointcloud"))


def test_knn_matches_brute_force_loop() -> None:
    x = torch.randn(2, 40, 5)
    k = 6
    idx = knn_indices(x, k)
    assert idx.shape == (2, 40, k)
    for b in range(2):
        for i in range(40):
            dists = [float(((x[b, i] - x[b, j]) ** 2).sum()) for j in range(40)]
            expected = sorted(range(40), key=lambda j: dists[j])[:k]
            assert idx[b, i].tolist() == expected  # nearest first, the point itself included
    assert (idx[..., 0] == torch.arange(40)).all()


def test_knn_with_separate_queries_and_too_large_k() -> None:
    x, q = torch.randn(1, 10, 3), torch.randn(1, 4, 3)
    idx = knn_indices(x, 3, query=q)
    for i in range(4):
        expected = torch.cdist(q[0, i : i + 1], x[0])[0].argsort()[:3]
        assert idx[0, i].tolist() == expected.tolist()
    with pytest.raises(ValueError, match="only 10 points"):
        knn_indices(x, 11)


def test_gather_points_per_batch() -> None:
    x = torch.randn(3, 7, 4)
    idx = torch.randint(0, 7, (3, 5, 2))
    out = gather_points(x, idx)
    for b in range(3):
        assert torch.equal(out[b], x[b][idx[b]])


def test_edgeconv_equals_conv_on_edge_features() -> None:
    """max_j act(BN(W [x_j - x_i, x_i])) computed naively, with W = [Theta | Phi]."""
    conv = EdgeConv(4, 6).eval()
    with torch.no_grad():
        conv.bn.running_mean.uniform_(-1, 1)
        conv.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 12, 4)
    idx = knn_indices(x, 5)
    weight = torch.cat([conv.theta.weight, conv.phi.weight], dim=1)  # acts on [x_j - x_i, x_i]
    expected = torch.empty(2, 12, 6)
    for b in range(2):
        for i in range(12):
            edges = torch.stack([torch.cat([x[b, j] - x[b, i], x[b, i]]) for j in idx[b, i].tolist()])
            h = conv.bn(edges @ weight.T)
            expected[b, i] = torch.nn.functional.leaky_relu(h, 0.2).max(dim=0).values
    with torch.no_grad():
        torch.testing.assert_close(conv(x, idx), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["dgcnn", "pointnet2"])
@pytest.mark.parametrize("in_channels", [3, 6])
def test_per_point_outputs(name: str, in_channels: int) -> None:
    encoder = ENCODERS.build(name, in_channels=in_channels, **TINY[name])
    assert encoder.out_dim == 24 and encoder.in_channels == in_channels
    x = torch.randn(3, 64, in_channels)
    out = encoder(x)  # train mode: batch statistics
    assert out["tokens"].shape == (3, 64, 24)
    assert out["global"].shape == (3, 24)
    out["tokens"].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
    encoder.eval()
    with torch.no_grad():
        out = encoder(x)
    torch.testing.assert_close(out["global"], out["tokens"].amax(dim=1))
    with pytest.raises(ValueError, match="expects"):
        encoder(torch.randn(2, 64, in_channels + 1))


@pytest.mark.parametrize("name", ["dgcnn", "pointnet2"])
def test_permuting_points_permutes_tokens(name: str) -> None:
    encoder = ENCODERS.build(name, **TINY[name]).eval()
    x = torch.randn(2, 64, 3)
    perm = torch.randperm(64)
    with torch.no_grad():
        out, out_perm = encoder(x), encoder(x[:, perm])
    torch.testing.assert_close(out_perm["tokens"], out["tokens"][:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out_perm["global"], out["global"], atol=1e-5, rtol=1e-4)


def test_farthest_point_sampling_on_a_line() -> None:
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0]]])
    # centroid 3.25: farthest is 10 (index 3); then 0 (index 0); then 2 (distance 2 to {0, 10})
    assert farthest_point_sample(xyz, 3).tolist() == [[3, 0, 2]]


def test_ball_query_keeps_nearest_inside_radius_and_pads() -> None:
    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [0.5, 0, 0], [0.05, 0, 0]]])
    idx = ball_query(xyz, xyz[:, :1], radius=0.2, num_samples=4)
    assert idx.tolist() == [[[0, 3, 1, 0]]]  # 0.5 is outside: padded with the nearest (the centre)
