"""Contrastive random walk: stochastic matrices, walk losses at their known limits, patch nodes,
the method end to end, and the video encoders' output contract."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmssl.modalities.video.crw import (
    ContrastiveRandomWalk,
    cycle_loss,
    extract_patches,
    palindrome_walks,
    transition_matrix,
)
from mmssl.modalities.video.encoders import RawColorEncoder, video_cnn, video_resnet18
from mmssl.registry import ENCODERS, METHODS


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_transition_matrices_are_row_stochastic(dropout):
    torch.manual_seed(0)
    x, y = unit(2, 9, 16, seed=1), unit(2, 9, 16, seed=2)
    a = transition_matrix(x @ y.transpose(1, 2), 0.07, dropout)
    assert a.dtype == torch.float32 and (a >= 0).all()
    torch.testing.assert_close(a.sum(dim=-1), torch.ones(2, 9))


def test_edge_dropout_removes_edges():
    torch.manual_seed(0)
    a = transition_matrix(torch.zeros(1, 200, 200), 1.0, edge_dropout=0.5)
    dropped = (a < 1e-12).float().mean().item()
    assert 0.45 < dropped < 0.55


def test_two_frame_cycle_matches_hand_formula():
    nodes = unit(1, 2, 5, 8, seed=3)
    (p,) = palindrome_walks(nodes, temperature=0.5)
    aff = nodes[0, 0] @ nodes[0, 1].T
    fwd = torch.exp(aff / 0.5) / torch.exp(aff / 0.5).sum(dim=1, keepdim=True)
    bwd = torch.exp(aff.T / 0.5) / torch.exp(aff.T / 0.5).sum(dim=1, keepdim=True)
    torch.testing.assert_close(p[0], fwd @ bwd)


def test_walk_lengths_and_longest_cycle():
    nodes = unit(2, 4, 6, 8, seed=4)
    walks = palindrome_walks(nodes, 0.3)
    assert len(walks) == 3 and len(palindrome_walks(nodes, 0.3, min_walk_length=2)) == 2
    for p in walks:
        torch.testing.assert_close(p.sum(dim=-1), torch.ones(2, 6))
    # k = 3 by hand: A0 A1 A2 B2 B1 B0
    x = nodes[1]
    fw = [torch.softmax(x[t] @ x[t + 1].T / 0.3, -1) for t in range(3)]
    bw = [torch.softmax(x[t + 1] @ x[t].T / 0.3, -1) for t in range(3)]
    expected = fw[0] @ fw[1] @ fw[2] @ bw[2] @ bw[1] @ bw[0]
    torch.testing.assert_close(walks[-1][1], expected)


def test_identical_frames_give_near_zero_loss():
    frame = unit(1, 1, 16, 64, seed=5)
    nodes = frame.expand(3, 5, -1, -1)  # 5 identical frames of 16 distinct nodes
    loss, logs = cycle_loss(palindrome_walks(nodes, temperature=0.01))
    assert loss.item() < 1e-3
    assert logs["acc"].item() == 1.0


def test_unrelated_frames_give_chance_loss():
    n = 32
    nodes = unit(4, 4, n, 512, seed=6)  # independent random frames: near-zero affinities
    loss, logs = cycle_loss(palindrome_walks(nodes, temperature=1.0))
    assert loss.item() == pytest.approx(math.log(n), rel=0.02)
    # and with the same temperature, identical frames are far below chance
    same, _ = cycle_loss(palindrome_walks(nodes[:, :1].expand(-1, 4, -1, -1), temperature=0.05))
    assert same.item() < 0.1 * math.log(n)


def test_extract_patches_grid_and_jitter():
    h, w = 20, 28
    # each pixel stores its own coordinates, so a patch tells where it was cut
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frames = torch.stack([ys, xs, ys * 0], dim=0).float()[None].repeat(3, 1, 1, 1)
    patches, (ny, nx) = extract_patches(frames, size=8, stride=4)
    assert (ny, nx) == (4, 6) and patches.shape == (3, 24, 3, 8, 8)
    torch.testing.assert_close(patches[1, 7], frames[1, :, 4:12, 4:12])  # row 1, column 1
    torch.manual_seed(0)
    jittered, _ = extract_patches(frames, size=8, stride=4, jitter=3)
    for f in range(3):
        for i in range(ny * nx):
            y0, x0 = int(jittered[f, i, 0, 0, 0]), int(jittered[f, i, 1, 0, 0])
            base_y, base_x = (i // nx) * 4, (i % nx) * 4
            assert abs(y0 - base_y) <= 3 and abs(x0 - base_x) <= 3
            assert 0 <= y0 <= h - 8 and 0 <= x0 <= w - 8
            torch.testing.assert_close(jittered[f, i], frames[f, :, y0 : y0 + 8, x0 : x0 + 8])


@pytest.mark.parametrize("nodes", ["grid", "patches"])
def test_crw_method_trains_and_prefers_static_clips(nodes):
    torch.manual_seed(0)
    method = METHODS.build(
        "crw",
        video_cnn(widths=(8, 16), stride=4),
        nodes=nodes,
        patch_size=16,
        patch_stride=8,
        patch_jitter=2,
        temperature=0.05,
        embed_dim=16,
    )
    assert isinstance(method, ContrastiveRandomWalk)
    noise = torch.randn(2, 4, 3, 32, 32)
    out = method({"clip": noise})
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    grads = [p.grad for p in method.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    method.eval()  # no dropout, no jitter: a static clip returns far better than unrelated frames
    with torch.no_grad():
        static = method({"clip": noise[:, :1].expand(-1, 4, -1, -1, -1)})["loss"]
        unrelated = method({"clip": noise})["loss"]
    assert static.item() < unrelated.item()


def test_crw_rejects_short_clips():
    method = METHODS.build("crw", video_cnn(), nodes="grid")
    with pytest.raises(ValueError, match="T>=2"):
        method({"clip": torch.randn(1, 1, 3, 16, 16)})


@pytest.mark.parametrize(
    ("name", "kwargs", "dim", "grid"),
    [
        ("video_resnet18", {}, 512, (4, 6)),
        ("video_resnet18", {"out_layer": "layer3"}, 256, (4, 6)),
        ("video_cnn", {}, 128, (8, 12)),
        ("video_cnn", {"stride": 8, "widths": [8, 16, 32]}, 32, (4, 6)),
    ],
)
def test_video_encoder_shapes(name, kwargs, dim, grid):
    assert ENCODERS.modality_of(name) == "video"
    enc = ENCODERS.build(name, **kwargs).eval()
    assert enc.out_dim == dim
    frames = torch.randn(2, 3, 32, 48)
    out = enc(frames)
    h, w = grid
    assert out["grid"] == grid
    assert out["tokens"].shape == (2, h * w, dim) and out["global"].shape == (2, dim)
    clips = torch.randn(2, 3, 3, 32, 48)
    cout = enc(clips)
    assert cout["grid"] == grid and cout["tokens"].shape == (2, 3 * h * w, dim)
    with torch.no_grad():
        # time-major tokens: frame 1 of clip 0 is the encoding of that frame alone
        torch.testing.assert_close(cout["tokens"][0, h * w : 2 * h * w], enc(clips[0, 1:2])["tokens"][0])
        torch.testing.assert_close(cout["global"], cout["tokens"].mean(dim=1))
    assert enc.feature_map(frames).shape == (2, dim, h, w)


def test_builders_and_raw_colour():
    assert video_resnet18().stride == 8 and video_cnn(stride=8).stride == 8
    with pytest.raises(ValueError):
        video_cnn(stride=2)
    raw = RawColorEncoder(4)
    x = torch.zeros(1, 3, 8, 8)  # normalised zeros = the ImageNet mean colour
    fmap = raw.feature_map(x)
    assert fmap.shape == (1, 3, 2, 2)
    assert torch.allclose(fmap, fmap[:, :, :1, :1].expand_as(fmap))
