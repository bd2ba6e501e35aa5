"""Pyramidal Lucas-Kanade flow and dense trajectories (mmssl.modalities.video.flow)."""

from __future__ import annotations

import pytest
import torch

from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.modalities.video.flow import chain_flows, clip_flows, optical_flow, to_gray, warp

SIZE = 48


def _coords() -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    return xs, ys


def texture(dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """A smooth analytic texture translated by (dx, dy): exact sub-pixel shifts, no resampling."""
    xs, ys = _coords()
    x, y = xs - dx, ys - dy
    v = 0.5 + 0.15 * torch.sin(0.31 * x + 0.2 * y) + 0.15 * torch.cos(0.17 * x - 0.41 * y + 1.0)
    v = v + 0.1 * torch.sin(0.37 * x + 0.29 * y + 2.0)
    return v.view(1, 1, SIZE, SIZE)


def test_identical_frames_give_zero_flow() -> None:
    img = torch.rand(2, 1, SIZE, SIZE)
    flow = optical_flow(img, img.clone())
    assert flow.shape == (2, 2, SIZE, SIZE)
    # Zero up to the float rounding of the (identity) warp's sampling grid.
    assert flow.abs().max() < 1e-4


@pytest.mark.parametrize("shift", [(0.3, 0.0), (1.5, -2.25), (-4.0, 3.0)])
def test_recovers_known_translation_of_texture(shift: tuple[float, float]) -> None:
    flow = optical_flow(texture(), texture(*shift))
    inner = flow[0, :, 8:-8, 8:-8].reshape(2, -1)  # borders see content enter / leave the image
    error = (inner - torch.tensor(shift).view(2, 1)).norm(dim=0)
    assert error.mean() < 0.1, (inner.mean(dim=1), error.mean())


def test_textured_sprite_and_panning_background_get_their_own_motion() -> None:
    # The procedural videos' situation: a textured disc moving one way over a textured background
    # panning another way. Each layer must keep its own flow away from the occlusion boundary.
    size, cx, cy, radius = 64, 30.0, 32.0, 11.0
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")

    def frame(bg: tuple[float, float], sprite: tuple[float, float]) -> torch.Tensor:
        bx, by = xs - bg[0], ys - bg[1]
        back = 0.4 + 0.1 * torch.sin(0.45 * bx + 0.3 * by) + 0.1 * torch.cos(0.25 * bx - 0.5 * by + 1.0)
        sx, sy = xs - sprite[0], ys - sprite[1]
        inside = (sx - cx) ** 2 + (sy - cy) ** 2 < radius**2
        return torch.where(inside, 0.5 + 0.3 * torch.sin(0.9 * (sx + sy)), back).view(1, 1, size, size)

    bg_shift, sprite_shift = (-1.0, 0.0), (2.0, 1.5)
    flow = optical_flow(frame((0.0, 0.0), (0.0, 0.0)), frame(bg_shift, sprite_shift))[0]
    dist = ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt()
    core = dist < 5
    background = (dist > 20) & (xs > 5) & (xs < size - 5) & (ys > 5) & (ys < size - 5)
    sprite_err = (flow[:, core] - torch.tensor(sprite_shift).view(2, 1)).norm(dim=0)
    bg_err = (flow[:, background] - torch.tensor(bg_shift).view(2, 1)).norm(dim=0)
    assert sprite_err.median() < 0.4, sprite_err.median()
    assert bg_err.median() < 0.05 and bg_err.quantile(0.9) < 0.2, (bg_err.median(), bg_err.quantile(0.9))


def test_flow_warps_second_image_onto_first() -> None:
    a, b = texture(), texture(1.0, 2.0)
    flow = optical_flow(a, b)
    before = (b - a)[..., 6:-6, 6:-6].abs().mean()
    after = (warp(b, flow) - a)[..., 6:-6, 6:-6].abs().mean()
    assert after < 0.05 * before


def test_clip_flows_matches_pairwise_calls() -> None:
    frames = torch.stack([texture(0.5 * t, -0.5 * t) for t in range(3)], dim=1)  # [1, 3, 1, H, W]
    clip = torch.cat([frames, frames.flip(1)])  # second clip moves backwards
    flows = clip_flows(clip)
    assert flows.shape == (2, 2, 2, SIZE, SIZE)
    for b in range(2):
        for t in range(2):
            expected = optical_flow(clip[b, t : t + 1], clip[b, t + 1 : t + 2])[0]
            assert torch.allclose(flows[b, t], expected, atol=1e-5)
    inner = flows[..., 6:-6, 6:-6].mean(dim=(-1, -2))
    assert torch.allclose(inner[0], torch.tensor([[0.5, -0.5]] * 2), atol=0.05)
    assert torch.allclose(inner[1], torch.tensor([[-0.5, 0.5]] * 2), atol=0.05)


def test_chain_flows_follows_points_not_pixels() -> None:
    # Step 0 moves everything by +2 px in x; step 1's flow depends on x (0.1 x). A point starting at
    # x0 is at x0 + 2 after step 0, so step 1 moves it by 0.1 (x0 + 2), not 0.1 x0.
    h, w = 8, 16
    xs = torch.arange(w).float().view(1, w).expand(h, w)
    f0 = torch.stack([torch.full((h, w), 2.0), torch.zeros(h, w)])
    f1 = torch.stack([0.1 * xs, torch.zeros(h, w)])
    traj = chain_flows(torch.stack([f0, f1]).unsqueeze(0))
    assert traj.shape == (1, 2, 2, h, w)
    assert torch.allclose(traj[0, 0, 0], torch.full((h, w), 2.0))
    x0 = xs[:, : w - 3]  # points that stay inside the image
    assert torch.allclose(traj[0, 1, 0, :, : w - 3], 2.0 + 0.1 * (x0 + 2.0), atol=1e-5)
    assert traj[0, :, 1].abs().max() < 1e-6


def test_to_gray_undoes_imagenet_normalisation() -> None:
    rgb = torch.rand(2, 3, 4, 5)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    luma = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    assert torch.allclose(to_gray((rgb - mean) / std), luma, atol=1e-5)
    assert torch.allclose(to_gray(rgb, normalized=False), luma, atol=1e-6)
