"""``data.backend: torchcodec``: TorchCodec decodes the same frames as decord (the default), scales while
decoding, names bad files, and drives the video datasets the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.video.io import read_video, video_info, write_video
from tests.video.test_video_io import CLIPS, smooth_frames


@pytest.fixture(scope="module", autouse=True)
def torchcodec_loads():
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except (ImportError, RuntimeError, OSError) as err:
        pytest.skip(f"TorchCodec cannot load here (it needs FFmpeg's shared libraries): {err}")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_same_frames_as_decord(tmp_path, suffix):
    path = write_video(tmp_path / f"clip{suffix}", smooth_frames(), fps=8)
    assert video_info(path, "torchcodec") == video_info(path, "decord")
    idx = [5, 0, 11, 5]  # any order, repeats allowed
    by_codec = read_video(path, idx, backend="torchcodec")
    by_decord = read_video(path, idx, backend="decord")
    assert by_codec.shape == by_decord.shape == (4, 64, 64, 3) and by_codec.dtype == torch.uint8
    # Same stream, two FFmpeg builds: equal up to colour-conversion rounding.
    assert (by_codec.int() - by_decord.int()).abs().float().mean() < 1.5
    assert torch.equal(by_codec[0], by_codec[3])


def test_scaled_decode_matches_full_decode_resized():
    path = CLIPS / "squirrel.mp4"
    if not path.exists():
        pytest.skip(f"real video sample not found: {path}")
    small = read_video(path, [10], size=(72, 128), backend="torchcodec")
    full = read_video(path, [10], backend="torchcodec")
    assert small.shape == (1, 72, 128, 3) and full.shape == (1, 720, 1280, 3)
    resized = torch.nn.functional.interpolate(
        full.permute(0, 3, 1, 2).float(), size=(72, 128), mode="bilinear", antialias=True
    )
    assert (small.permute(0, 3, 1, 2).float() - resized).abs().mean() < 3.0


def test_bad_files_and_indices_are_named(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(CorruptFileError, match="garbage.mp4"):
        read_video(garbage, backend="torchcodec")
    path = write_video(tmp_path / "clip.mp4", smooth_frames(), fps=8)
    with pytest.raises(DataError, match="frame index 99 out of range for .*clip.mp4"):
        read_video(path, [99], backend="torchcodec")
    with pytest.raises(DataError, match="unknown video backend 'ffmpeg'"):
        read_video(path, backend="ffmpeg")


def test_video_dataset_reads_through_the_backend(tmp_path):
    from mmssl.modalities.video.datasets import video_folder

    for label in ("a", "b"):
        for i in range(3):
            (tmp_path / label).mkdir(exist_ok=True)
            write_video(tmp_path / label / f"{i}.mp4", smooth_frames(seed=i), fps=8)
    common = dict(root=str(tmp_path), clip_len=4, frame_size=32, test_fraction=0.34, seed=0)
    by_codec = video_folder(backend="torchcodec", **common)
    by_decord = video_folder(**common)
    assert by_codec.stats["backend"] == "torchcodec" and by_decord.stats["backend"] == "decord"
    a, b = by_codec.eval_test[0], by_decord.eval_test[0]  # deterministic evaluation clips
    assert a["input"].shape == b["input"].shape and a["label"] == b["label"]
    assert (a["input"] - b["input"]).abs().mean() < 0.05
    assert np.isfinite(by_codec.pretrain[0]["clip"].numpy()).all()
