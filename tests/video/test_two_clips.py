"""Two clips of one video as the two views (CVRL): temporal sampling, per-clip augmentation, the dataset
option and its recipe contract."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmssl.config import from_dict
from mmssl.data.keys import INDEX, VIEWS
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.video.datasets import procedural_videos
from mmssl.modalities.video.sources import scan_sources
from mmssl.modalities.video.two_clips import (
    ClipPairViews,
    TwoClipDataset,
    TwoClipOptions,
    clip_view_transform,
    interval_probabilities,
    sample_two_clip_indices,
)

TINY = dict(num_videos=8, num_heldout=4, num_frames=12, video_size=32, num_classes=2, max_objects=2)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# ------------------------------------------------------------------------------------------ sampler


@pytest.mark.parametrize(
    ("num_frames", "clip_len", "stride", "max_distance"),
    [(20, 4, 1, 8), (20, 4, 2, None), (30, 3, 3, 5), (9, 4, 2, 100), (7, 4, 1, 0)],
)
def test_two_clips_are_strided_in_range_and_within_distance(num_frames, clip_len, stride, max_distance):
    gen = torch.Generator().manual_seed(0)
    span = (clip_len - 1) * stride + 1
    limit = num_frames - span if max_distance is None else min(max_distance, num_frames - span)
    seen = set()
    for _ in range(400):
        a, b = sample_two_clip_indices(num_frames, clip_len, stride, max_distance, generator=gen)
        assert len(a) == len(b) == clip_len
        for clip in (a, b):
            assert np.all(np.diff(clip) == stride) and 0 <= clip[0] and clip[-1] < num_frames
        distance = b[0] - a[0]
        assert 0 <= distance <= limit  # the second clip starts d >= 0 frames later, d within the limit
        seen.add(distance)
    assert seen == set(range(limit + 1))  # every allowed distance is reachable


def test_interval_distribution_is_cvrl_linear_decreasing():
    # Brute force: P(d) ~ (D + 1 - d) for d = 0..D, normalised; uniform gives 1 / (D + 1).
    probs = interval_probabilities(4)
    expected = torch.tensor([5, 4, 3, 2, 1], dtype=torch.float64) / 15
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(
        interval_probabilities(3, "uniform"), torch.full((4,), 0.25, dtype=torch.float64)
    )
    # and the sampler follows it: empirical frequencies of the distance within a few standard errors
    gen = torch.Generator().manual_seed(1)
    n = 6000
    counts = Counter(
        b[0] - a[0] for a, b in (sample_two_clip_indices(12, 4, 1, 4, generator=gen) for _ in range(n))
    )
    for d, p in enumerate(expected.tolist()):
        assert abs(counts[d] / n - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_short_video_gives_two_padded_clips():
    a, b = sample_two_clip_indices(3, 4, 2, 5, generator=torch.Generator().manual_seed(0))
    assert a == b == [0, 2, 2, 2]
    with pytest.raises(DataError, match="interval"):
        sample_two_clip_indices(10, 2, 1, 3, interval="power")


def test_options_are_checked():
    with pytest.raises(ValueError, match="interval"):
        TwoClipOptions(interval="linear")
    with pytest.raises(ValueError, match="crop_scale"):
        TwoClipOptions(crop_scale=(0.9, 0.3))
    with pytest.raises(ValueError, match="max_distance"):
        TwoClipOptions(max_distance=-1)


# ------------------------------------------------------------------------------------ augmentation


def test_augmentation_is_shared_by_the_frames_of_a_clip_and_independent_between_clips():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (1, 40, 40, 3), dtype=torch.uint8)
    clip = frame.expand(4, -1, -1, -1).clone()  # a still video: only the augmentation can tell frames apart
    views = ClipPairViews(clip_view_transform(32, TwoClipOptions()))
    pairs = [views((clip, clip)) for _ in range(6)]
    for first, second in pairs:
        assert first.shape == second.shape == (4, 3, 32, 32)
        for view in (first, second):
            assert torch.equal(view[0].expand_as(view), view)  # one crop/flip/jitter for every frame
    assert sum(not torch.equal(first, second) for first, second in pairs) == len(pairs)


def test_colour_jitter_alone_differs_between_clips_but_not_within():
    torch.manual_seed(1)
    no_geometry = TwoClipOptions(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=1.0)
    frames = torch.randint(0, 256, (3, 24, 24, 3), dtype=torch.uint8)  # three different frames
    first, second = ClipPairViews(clip_view_transform(24, no_geometry))((frames, frames))
    assert not torch.equal(first, second)  # independent jitter draws for the two clips
    # one brightness/contrast/saturation/hue draw for every frame: equal input frames stay equal
    same = frames[:1].expand(3, -1, -1, -1).clone()
    out = clip_view_transform(24, no_geometry)(same)
    assert torch.equal(out[0].expand_as(out), out)


# ---------------------------------------------------------------------------------------- dataset


def _counting_video(folder: Path, num_frames: int, offset: int) -> Path:
    """A frame folder whose frame k is a flat grey of value ``offset + 10 k``: the pixel says which
    frame of which video it is."""
    folder.mkdir(parents=True)
    for k in range(num_frames):
        Image.fromarray(np.full((16, 16, 3), offset + 10 * k, dtype=np.uint8)).save(folder / f"{k:05d}.png")
    return folder


def test_dataset_reads_two_clips_of_the_same_video(tmp_path):
    sources = scan_sources(
        [(_counting_video(tmp_path / "a", 20, 0), 0), (_counting_video(tmp_path / "b", 12, 5), 1)]
    )
    options = TwoClipOptions(max_distance=6)
    dataset = TwoClipDataset(sources, clip_len=3, frame_stride=2, frame_size=16, options=options)
    torch.manual_seed(0)
    for index, offset in ((0, 0), (1, 5)):
        for _ in range(20):
            (first, second), label = dataset[index]
            assert label == index and first.shape == second.shape == (3, 16, 16, 3)
            starts = []
            for clip in (first, second):
                values = clip.flatten(1).float()
                assert torch.equal(values, values[:, :1].expand_as(values))  # flat frames, undistorted
                frame_ids = (values[:, 0] - offset) / 10
                assert torch.equal(frame_ids, frame_ids.round())  # from this video, no other
                assert torch.equal(frame_ids.diff(), torch.full((2,), 2.0))  # the clip's stride
                starts.append(int(frame_ids[0]))
            assert 0 <= starts[1] - starts[0] <= 6


def test_procedural_bundle_with_two_clips_feeds_the_two_view_methods(tmp_path):
    bundle = procedural_videos(
        seed=0, clip_len=4, frame_size=32, views="two_clips", two_clips=TwoClipOptions(max_distance=4), **TINY
    )
    assert bundle.produces == {VIEWS, INDEX} and bundle.stats["views"] == "two_clips"
    item = bundle.pretrain[1]
    assert set(item) == {VIEWS, INDEX} and item[INDEX] == 1
    assert [tuple(v.shape) for v in item[VIEWS]] == [(4, 3, 32, 32)] * 2
    assert bundle.eval_test[0]["input"].shape == (4, 3, 32, 32)  # evaluation clips unchanged
    batch = torch.utils.data.default_collate([bundle.pretrain[i] for i in range(3)])
    assert [tuple(v.shape) for v in batch[VIEWS]] == [(3, 4, 3, 32, 32)] * 2


def _recipe(method: dict, data: dict) -> dict:
    return {
        "name": "t",
        "modality": "video",
        "method": method,
        "encoder": {"name": "video_cnn"},
        "data": {"name": "procedural_videos", **data},
        "train": {"steps": 1},
        "eval": {},
    }


@pytest.mark.parametrize("method", ["simclr", "moco", "byol"])
def test_recipe_contract_two_view_methods_need_two_clips(method):
    from_dict(_recipe({"name": method}, {"views": "two_clips", "two_clips": {"max_distance": 4}}))
    with pytest.raises(ConfigError, match="views"):
        from_dict(_recipe({"name": method}, {}))  # one clip per item: no 'views' key


def test_recipe_typos_fail_at_load():
    with pytest.raises(ConfigError, match="max_distance"):
        from_dict(_recipe({"name": "simclr"}, {"views": "two_clips", "two_clips": {"max_distanse": 4}}))
    with pytest.raises((ConfigError, DataError), match="two_clips"):
        from_dict(_recipe({"name": "simclr"}, {"views": "two_clip"}))
    with pytest.raises(ConfigError, match="clip"):
        from_dict(_recipe({"name": "crw"}, {"views": "two_clips"}))  # crw reads single clips
