"""ACD pretext: grouped embeddings score lower, augmentations are rigid / scale / shift, training helps."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.core.losses import pairwise_group_contrastive
from mmssl.modalities.pointcloud.acd_pretext import acd_loss, augment_points, encoder_input
from mmssl.registry import ENCODERS, METHODS

TINY_DGCNN = {"k": 8, "edge_dims": (16, 16), "global_dim": 32, "point_dims": (32,), "dropout": 0.0}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _grouped_embeddings(b: int = 2, n: int = 48, groups: int = 4, dim: int = 16) -> tuple:
    components = torch.randint(0, groups, (b, n))
    centres = torch.nn.functional.normalize(torch.randn(groups, dim), dim=1)
    emb = centres[components] + 0.05 * torch.randn(b, n, dim)
    return emb, components


def test_loss_lower_when_grouped_by_component_than_shuffled() -> None:
    emb, components = _grouped_embeddings()
    shuffled = emb[:, torch.randperm(emb.shape[1])]
    gen = torch.Generator().manual_seed(0)
    grouped_loss = acd_loss(emb, components, loss_points=None, generator=gen)
    shuffled_loss = acd_loss(shuffled, components, loss_points=None, generator=gen)
    assert grouped_loss < 0.1 < shuffled_loss


def test_all_points_equals_core_loss_and_unknown_ids_are_ignored() -> None:
    emb, components = _grouped_embeddings()
    components[:, :5] = -1
    full = acd_loss(emb, components, balance=False, loss_points=None)
    torch.testing.assert_close(full, pairwise_group_contrastive(emb, components, balance=False))
    # loss_points >= N keeps every point
    torch.testing.assert_close(acd_loss(emb, components, balance=False, loss_points=48), full)


def test_subsampled_loss_uses_the_points_of_each_shape() -> None:
    """Perfectly separated, orthogonal components give 0 on any subset; mixing one point does not."""
    components = torch.arange(4).repeat_interleave(8).unsqueeze(0)  # [1, 32]
    emb = torch.eye(4)[components]
    assert acd_loss(emb, components, loss_points=12) == 0
    emb[0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # point 0 embedded like component 1
    gen = torch.Generator().manual_seed(0)
    losses = [acd_loss(emb, components, balance=False, loss_points=12, generator=gen) for _ in range(20)]
    assert min(losses) == 0 and max(losses) > 0  # positive only when point 0 is drawn


def test_augment_rotation_about_up_axis_is_rigid_and_moves_normals() -> None:
    pts = torch.randn(3, 20, 3)
    normals = torch.nn.functional.normalize(torch.randn(3, 20, 3), dim=-1)
    out, out_n = augment_points(pts, normals, scale=(1, 1), shift=0.0, rotate_up=True, up_axis=1)
    torch.testing.assert_close(out[..., 1], pts[..., 1])  # the up coordinate is kept
    torch.testing.assert_close(torch.cdist(out, out), torch.cdist(pts, pts), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((out * out_n).sum(-1), (pts * normals).sum(-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, pts)


def test_augment_scale_and_shift_ranges() -> None:
    pts = torch.randn(64, 10, 3)
    normals = torch.randn(64, 10, 3)
    scaled, same_normals = augment_points(pts, normals, scale=(2.0, 2.0), shift=0.0)
    torch.testing.assert_close(scaled, 2 * pts)
    assert torch.equal(same_normals, normals)
    shifted, _ = augment_points(pts, None, scale=(1.0, 1.0), shift=0.1)
    offset = shifted - pts
    torch.testing.assert_close(offset, offset[:, :1].expand_as(offset))  # one offset per shape
    assert offset.abs().max() <= 0.1 + 1e-6 and offset.abs().max() > 0.05
    factor = augment_points(pts, None, shift=0.0)[0] / pts
    assert factor.min() >= 0.8 - 1e-5 and factor.max() <= 1.25 + 1e-5
    jittered, _ = augment_points(pts, None, scale=(1, 1), shift=0.0, jitter=0.01)
    assert 0 < (jittered - pts).abs().max() <= 0.05 + 1e-6


def test_encoder_input_channels() -> None:
    pts, normals = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    assert encoder_input(pts, normals, 3) is pts
    assert encoder_input(pts, normals, 6).shape == (2, 5, 6)
    with pytest.raises(ValueError, match="normals"):
        encoder_input(pts, None, 6)


def _batch(b: int = 4, n: int = 64) -> dict:
    """Shapes made of 4 well separated blobs; the component id is the blob."""
    components = torch.arange(4).repeat_interleave(n // 4).expand(b, -1).clone()
    centres = torch.tensor([[0.6, 0, 0], [-0.6, 0, 0], [0, 0.6, 0], [0, -0.6, 0]])
    points = centres[components] + 0.08 * torch.randn(b, n, 3)
    normals = torch.nn.functional.normalize(torch.randn(b, n, 3), dim=-1)
    return {"points": points, "normals": normals, "acd": components, "index": torch.arange(b)}


def test_method_forward_backward_and_training_lowers_the_loss() -> None:
    encoder = ENCODERS.build("dgcnn", **TINY_DGCNN)
    method = METHODS.build("acd", encoder, loss_points=32, rotate_up=True)
    assert method.encoder is encoder and method.projector is None
    batch = _batch()
    out = method(batch)
    assert out["loss"].ndim == 0 and math.isfinite(out["loss"].item())
    assert out["acd_labelled"] == 1.0
    method.eval()
    with torch.no_grad():
        before = method(batch)["loss"].item()
    method.train()
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    for _ in range(25):
        opt.zero_grad()
        method(batch)["loss"].backward()
        opt.step()
    method.eval()
    with torch.no_grad():
        after = method(batch)["loss"].item()
    assert after < 0.5 * before


def test_projection_head_option() -> None:
    encoder = ENCODERS.build("dgcnn", in_channels=6, **TINY_DGCNN)
    method = METHODS.build("acd", encoder, projector_dim=8, projector_hidden=16, loss_points=None)
    assert method.projector is not None and method.in_channels == 6
    method(_batch(2, 32))["loss"].backward()
    assert method.projector.net[0].weight.grad is not None


def test_save_figures_renders_components(tmp_path) -> None:
    from mmssl.data import DataBundle

    batch = _batch(6, 32)
    items = [{"points": batch["points"][i], "acd": batch["acd"][i], "index": i} for i in range(6)]
    method = METHODS.build("acd", ENCODERS.build("dgcnn", **TINY_DGCNN))
    method.save_figures(tmp_path, DataBundle(pretrain=items), torch.device("cpu"))
    assert (tmp_path / "acd_components.png").stat().st_size > 1000
