"""Label propagation: identity features reproduce the first mask, colour features track a moving
object, the spatial restriction matches a brute-force definition, and the evaluator runs end to end
on a tiny DAVIS-layout folder (and on the real DAVIS sample when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.modalities.video.encoders import RawColorEncoder
from mmssl.modalities.video.eval import frame_size_for, label_propagation, normalize_frames
from mmssl.modalities.video.io import write_palette_mask
from mmssl.modalities.video.propagation import (
    context_frames,
    downsample_labels,
    labels_to_masks,
    labels_to_onehot,
    propagate_labels,
    radius_mask,
)
from mmssl.modalities.video.propagation_set import PropagationSet
from mmssl.registry import EVALUATORS

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


class PositionEncoder(nn.Module):
    """Identity-like encoder: each ``stride x stride`` cell gets its own one-hot feature."""

    def __init__(self, stride: int = 4) -> None:
        super().__init__()
        self.stride = stride
        self.out_dim = 0

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        eye = torch.eye(h * w, device=x.device).reshape(h * w, h, w)
        return eye.unsqueeze(0).expand(x.shape[0], -1, -1, -1)


def test_identity_features_on_a_static_video_reproduce_the_first_mask():
    t, h, w, s = 6, 24, 32, 4
    mask = torch.zeros(h, w, dtype=torch.long)
    mask[4:12, 8:20] = 1
    mask[16:24, 0:12] = 2  # cell-aligned objects
    feats = PositionEncoder(s).feature_map(torch.zeros(t, 3, h, w))
    first = downsample_labels(labels_to_onehot(mask, 3), (h // s, w // s))
    for radius in (None, 0.0, 3.0):
        soft = propagate_labels(feats, first, n_context=2, topk=5, radius=radius, temperature=0.05)
        assert soft.shape == (t, 3, h // s, w // s)
        # the top-1 neighbour is the same cell (affinity 1 vs 0): weight 1 - O(k e^-20)
        torch.testing.assert_close(soft, first.expand(t, -1, -1, -1), atol=1e-6, rtol=0)
        # every frame is decoded exactly as the first one (bilinear upsampling rounds the objects'
        # corners, so that is the reference, not the pixel mask)
        masks = labels_to_masks(soft, (h, w))
        assert torch.equal(masks, labels_to_masks(first[None], (h, w)).expand(t, -1, -1))
    # at stride 1 the pixel mask itself comes back
    feats = PositionEncoder(1).feature_map(torch.zeros(3, 3, h, w))
    soft = propagate_labels(feats, labels_to_onehot(mask, 3), n_context=1, topk=3, radius=1.0)
    assert torch.equal(labels_to_masks(soft, (h, w)), mask.expand(3, -1, -1))


def test_soft_labels_stay_distributions():
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(5, 8, 6, 6), dim=1)
    first = torch.softmax(torch.randn(3, 6, 6), dim=0)
    soft = propagate_labels(feats, first, n_context=2, topk=4, radius=2.0, temperature=0.1, query_chunk=7)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(5, 6, 6))
    assert (soft >= 0).all()


def test_colour_features_track_a_moving_square():
    """A red square moves 2 px per frame over grey: raw-colour propagation must follow it."""
    t, h, w = 8, 32, 48
    frames = torch.full((t, h, w, 3), 128, dtype=torch.uint8)
    masks = torch.zeros(t, h, w, dtype=torch.long)
    for i in range(t):
        frames[i, 8:20, 4 + 2 * i : 16 + 2 * i] = torch.tensor([220, 30, 30], dtype=torch.uint8)
        masks[i, 8:20, 4 + 2 * i : 16 + 2 * i] = 1
    enc = RawColorEncoder(stride=2)
    feats = F.normalize(enc.feature_map(normalize_frames(frames)), dim=1)
    first = downsample_labels(labels_to_onehot(masks[0], 2), tuple(feats.shape[-2:]))
    soft = propagate_labels(feats, first, n_context=3, topk=5, radius=4.0, temperature=0.05)
    pred = labels_to_masks(soft, (h, w))
    inter = ((pred == 1) & (masks == 1)).sum(dim=(1, 2)).float()
    union = ((pred == 1) | (masks == 1)).sum(dim=(1, 2)).float()
    assert (inter / union).min() > 0.8


def test_radius_mask_matches_brute_force():
    h, w, r = 4, 5, 1.5
    got = radius_mask(h, w, r)
    for i in range(h * w):
        for j in range(h * w):
            (y1, x1), (y2, x2) = divmod(i, w), divmod(j, w)
            assert bool(got[i, j]) == ((y1 - y2) ** 2 + (x1 - x2) ** 2 <= r * r)


def test_context_frames_first_plus_recent():
    assert context_frames(1, 3) == [0]
    assert context_frames(2, 3) == [0, 1]
    assert context_frames(10, 3) == [0, 7, 8, 9]


def test_frame_size_for():
    assert frame_size_for((480, 854), None) is None
    assert frame_size_for((480, 854), 240) == (240, 427)
    assert frame_size_for((480, 854), [100, 200]) == (100, 200)


def _write_davis_layout(root: Path, name: str, t: int = 5, h: int = 24, w: int = 32) -> torch.Tensor:
    """Static video of two coloured blocks; returns the mask."""
    mask = torch.zeros(h, w, dtype=torch.long)
    mask[4:12, 8:20] = 1
    mask[16:24, 0:12] = 2
    colours = np.array([[100, 100, 100], [230, 20, 20], [20, 20, 230]], dtype=np.uint8)
    frame = colours[mask.numpy()]
    for i in range(t):
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(root / "JPEGImages" / "480p" / name / f"{i:05d}.jpg", quality=95)
        write_palette_mask(root / "Annotations" / "480p" / name / f"{i:05d}.png", mask)
    return mask


def test_evaluator_end_to_end_on_a_tiny_davis_folder(tmp_path):
    for name in ("a", "b"):
        _write_davis_layout(tmp_path / "davis", name)
    data = DataBundle(pretrain=[], extras=(PropagationSet(str(tmp_path / "davis"), ["a", "b"]),))
    assert EVALUATORS.get("label_propagation") is label_propagation
    out = label_propagation(
        PositionEncoder(1),
        data,
        EvalContext(figures_dir=tmp_path / "fig"),
        n_context=2,
        topk=5,
        radius=3,
        sequences=1,
    )
    assert out["jf_mean"] == pytest.approx(1.0) and out["j_mean"] == pytest.approx(1.0)
    assert out["f_mean"] == pytest.approx(1.0)
    # raw colour on a static video of flat colours is nearly exact (JPEG ringing at the edges)
    assert out["jf_mean_raw_color"] > 0.95
    assert (tmp_path / "fig" / "propagation_a.png").is_file()
    assert not (tmp_path / "fig" / "propagation_b.png").exists()  # sequences=1
    assert (tmp_path / "fig" / "propagation_scores.json").is_file()


def test_evaluator_on_real_davis_sample():
    root = DATA / "video" / "DAVIS"
    if not (root / "JPEGImages" / "480p" / "blackswan").is_dir():
        pytest.skip(f"DAVIS sample not found: {root}")
    out = label_propagation(
        RawColorEncoder(8),
        DataBundle(pretrain=[]),
        EvalContext(),
        root=str(root),
        sequences=["blackswan"],
        frame_size=96,
        max_frames=8,
        n_context=4,
        raw_color=False,
    )
    # Colour alone tracks the black swan on the lake a fair way over 8 frames.
    assert 0.3 < out["jf_mean"] <= 1.0
