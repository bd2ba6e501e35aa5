"""Clip sampling, clip transforms, the procedural video set and the registered video datasets."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.modalities.video.datasets import davis, video_folder
from mmssl.modalities.video.io import load_davis_sequence, read_mask, read_video, write_video
from mmssl.modalities.video.procedural import (
    VIDEO_CLASSES,
    ProceduralVideoSpec,
    build_procedural_videos,
    render_video,
    video_rng,
)
from mmssl.modalities.video.propagation_set import PropagationSet
from mmssl.modalities.video.views import (
    decode_size,
    eval_clip_transform,
    sample_clip_indices,
    train_clip_transform,
)
from mmssl.registry import DATASETS

DAVIS16 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video" / "DAVIS"
TINY = dict(num_videos=8, num_heldout=4, num_frames=6, video_size=32, num_classes=2, max_objects=3)

# --------------------------------------------------------------------------------------- sampler


def test_uniform_clip_is_centred_and_strided():
    assert sample_clip_indices(20, 4, 3, "uniform") == [5, 8, 11, 14]  # span 10, slack 10 -> start 5
    assert sample_clip_indices(10, 10, 1, "uniform") == list(range(10))


def test_random_clips_cover_every_start_and_keep_stride():
    gen = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(300):
        idx = sample_clip_indices(12, 3, 2, "random", generator=gen)
        assert np.all(np.diff(idx) == 2) and 0 <= idx[0] and idx[-1] <= 11
        starts.add(idx[0])
    assert starts == set(range(8))  # span 5 in 12 frames: starts 0..7, all reachable
    a = sample_clip_indices(50, 4, 2, "random", generator=torch.Generator().manual_seed(7))
    b = sample_clip_indices(50, 4, 2, "random", generator=torch.Generator().manual_seed(7))
    assert a == b


def test_short_video_padded_or_rejected():
    assert sample_clip_indices(5, 4, 2, "random", short="pad") == [0, 2, 4, 4]
    with pytest.raises(DataError, match=r"tiny\.mp4 has 5 frames.*needs 7"):
        sample_clip_indices(5, 4, 2, "uniform", short="error", where="tiny.mp4")
    with pytest.raises(DataError, match="unknown sampling"):
        sample_clip_indices(5, 2, 1, "middle")


def test_decode_size_covers_output_and_keeps_aspect():
    assert decode_size(720, 1280, 64) == (64, 114)
    assert decode_size(480, 854, (32, 128)) == (72, 128)
    assert decode_size(48, 48, 64) == (48, 48)  # never enlarged while decoding
    assert decode_size(48, 48, 64, upscale=True) == (64, 64)


def test_eval_transform_normalises_and_crops():
    colour = torch.tensor([200, 100, 50], dtype=torch.uint8)
    clip = colour.expand(3, 40, 60, 3).clone()
    out = eval_clip_transform(32)(clip)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    expected = (colour.float() / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[:, :, 5, 7], expected.expand(3, 3), atol=1e-4)
    # Centre crop of a frame with a marked centre column: the mark stays in the middle.
    marked = torch.zeros(1, 32, 64, 3, dtype=torch.uint8)
    marked[:, :, 32] = 255
    centre = eval_clip_transform(32)(marked)[0, 0]
    assert int(centre[0].argmax()) == 16


def test_train_transform_is_shared_by_all_frames():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (1, 48, 48, 3), dtype=torch.uint8)
    clip = frame.expand(5, -1, -1, -1).clone()
    outs = [train_clip_transform(24)(clip) for _ in range(4)]
    for out in outs:
        assert out.shape == (5, 3, 24, 24)
        assert torch.equal(out[0].expand_as(out), out)  # identical frames stay identical: one crop
    assert not all(torch.equal(outs[0], o) for o in outs[1:])  # but crops differ between clips


# ------------------------------------------------------------------------------------ procedural


def test_procedural_masks_match_rendered_pixels():
    for label in range(len(VIDEO_CLASSES)):
        v = render_video(label, video_rng(3, label), num_frames=8, frame_size=48)
        frames, masks, bg = (v[k].astype(int) for k in ("frames", "masks", "background"))
        assert frames.shape == (8, 48, 48, 3) and masks.shape == (8, 48, 48)
        assert np.array_equal(frames[masks == 0], bg[masks == 0])  # background where the mask says so
        diff = np.abs(frames - bg).sum(-1)
        assert diff[masks > 0].mean() > 60  # sprites stand out from the background behind them
        assert (diff[masks > 0] > 0).mean() > 0.95
        assert set(np.unique(masks)) <= set(range(v["full_masks"].shape[0] + 1))


def test_procedural_occlusion_follows_depth_order():
    occluded_any = False
    for i in range(6):
        v = render_video(i % 5, video_rng(1, i), num_frames=10, frame_size=48)
        full, masks, depth = v["full_masks"], v["masks"], list(v["depth"])
        for pos, obj in enumerate(depth):
            in_front = np.zeros_like(full[0])
            for front in depth[pos + 1 :]:
                in_front |= full[front - 1]
            visible = masks == obj
            assert np.array_equal(visible, full[obj - 1] & ~in_front)  # exactly the un-occluded part
            occluded_any |= bool(visible.sum() < full[obj - 1].sum())
    assert occluded_any


def test_procedural_motion_classes_differ_in_the_main_sprite():
    def area_ratio(label: int, i: int) -> float:
        full = render_video(label, video_rng(0, i), num_frames=20, frame_size=64)["full_masks"][0]
        # Only frames where the sprite is wholly inside the picture: the border cuts area too.
        inside = ~(full[:, 0].any(1) | full[:, -1].any(1) | full[:, :, 0].any(1) | full[:, :, -1].any(1))
        area = full[inside].sum((1, 2))
        assert len(area) >= 5
        return float(area.max() / area.min())

    zoom, bounce = VIDEO_CLASSES.index("zoom"), VIDEO_CLASSES.index("bounce")
    assert min(area_ratio(zoom, i) for i in range(3)) > 2.0
    assert max(area_ratio(bounce, i) for i in range(3)) < 1.8


def test_procedural_set_layout_and_cache(tmp_path):
    spec = ProceduralVideoSpec(num_videos=6, num_heldout=2, num_frames=5, frame_size=32, num_classes=2)
    folder = build_procedural_videos(spec, tmp_path)
    assert folder == tmp_path / spec.key()
    assert [p.name for p in tmp_path.iterdir()] == [spec.key()]  # no temporary folder left behind
    meta = json.loads((folder / "meta.json").read_text())
    assert [r["split"] for r in meta["videos"]] == ["train"] * 4 + ["heldout"] * 2
    assert (folder / "DAVIS" / "ImageSets" / "2017" / "val.txt").read_text().split() == [
        "0004_bounce",
        "0005_orbit",
    ]
    v = render_video(1, video_rng(0, 5), 5, 32, 3)
    name = "0005_orbit"
    mp4 = read_video(folder / "videos" / "heldout" / "orbit" / f"{name}.mp4").numpy().astype(int)
    assert mp4.shape == (5, 32, 32, 3)
    assert np.abs(mp4 - v["frames"]).mean() < 8  # H.264 4:4:4 at crf 18
    seq = load_davis_sequence(folder / "DAVIS", name)
    assert np.array_equal(seq.masks.numpy(), v["masks"])
    assert np.abs(seq.frames.numpy().astype(int) - v["frames"]).mean() < 5  # JPEG q95 4:4:4
    mask_png = folder / "DAVIS" / "Annotations" / "480p" / name / "00000.png"
    assert np.array_equal(read_mask(mask_png), v["masks"][0])
    stamp = (folder / "meta.json").stat().st_mtime_ns
    assert build_procedural_videos(spec, tmp_path) == folder
    assert (folder / "meta.json").stat().st_mtime_ns == stamp  # reused, not regenerated


@pytest.mark.parametrize("damage", ["truncated_mp4", "altered_jpeg", "garbage_meta", "no_checksums"])
def test_damaged_procedural_set_is_named_and_generated_again(tmp_path, caplog, damage):
    spec = ProceduralVideoSpec(num_videos=4, num_heldout=2, num_frames=3, frame_size=16, num_classes=2)
    folder = build_procedural_videos(spec, tmp_path)
    victim = {
        "truncated_mp4": folder / "videos" / "train" / "bounce" / "0000_bounce.mp4",
        "altered_jpeg": folder / "DAVIS" / "JPEGImages" / "480p" / "0001_orbit" / "00001.jpg",
        "garbage_meta": folder / "meta.json",
        "no_checksums": folder / "checksums.sha256",
    }[damage]
    original = victim.read_bytes()
    if damage == "truncated_mp4":
        victim.write_bytes(original[: len(original) // 2])
    elif damage == "altered_jpeg":  # same size, still a decodable JPEG: only the checksum tells
        victim.write_bytes(original[:-40] + bytes(b ^ 1 for b in original[-40:-2]) + original[-2:])
    elif damage == "garbage_meta":
        victim.write_text("{not json")
    else:
        victim.unlink()
    with caplog.at_level(logging.WARNING):
        assert build_procedural_videos(spec, tmp_path) == folder
    assert f"ignoring damaged procedural video set {folder}" in caplog.text and str(victim) in caplog.text
    assert victim.read_bytes() == original  # generated again, identical
    assert [p.name for p in tmp_path.iterdir()] == [spec.key()]  # nothing left aside
    caplog.clear()
    assert build_procedural_videos(spec, tmp_path) == folder and not caplog.text  # intact: reused


def test_procedural_builder_items_have_documented_shapes(tmp_path):
    data = DATASETS.get("procedural_videos")(
        clip_len=4, frame_stride=1, frame_size=24, cache_dir=str(tmp_path), **TINY
    )
    assert data.num_classes == 2 and data.stats["class_names"] == ["bounce", "orbit"]
    assert (len(data.pretrain), len(data.eval_train), len(data.eval_test)) == (4, 4, 4)
    item = data.pretrain[1]
    assert set(item) == {"clip", "label", "index"}
    assert item["clip"].shape == (4, 3, 24, 24) and item["clip"].dtype == torch.float32
    assert item["label"] == 1 and item["index"] == 1
    ev = data.eval_test[0]
    assert set(ev) == {"input", "label"} and ev["input"].shape == (4, 3, 24, 24)
    assert torch.equal(ev["input"], data.eval_test[0]["input"])  # deterministic evaluation clips
    assert data.eval_test.targets == [0, 1, 0, 1]
    batch = next(iter(DataLoader(data.pretrain, batch_size=3)))
    assert batch["clip"].shape == (3, 4, 3, 24, 24) and batch["label"].tolist() == [0, 1, 0]
    # Items cross process boundaries (DataLoader workers): they must survive pickling, keys included.
    for it in (item, ev):
        assert sorted(pickle.loads(pickle.dumps(it))) == sorted(it)
    prop = data.find_extra(PropagationSet)
    assert prop.resolution == "480p" and len(prop.sequences) == 4
    seq = load_davis_sequence(prop.root, prop.sequences[0], prop.resolution)
    assert seq.num_objects >= 2 and seq.frames.shape == (6, 32, 32, 3)


# --------------------------------------------------------------------------- folders, bad files


def _video_folder(tmp_path: Path) -> Path:
    """root/<class>/: two mp4 per class, one frame folder in class 'b'."""
    from PIL import Image

    root = tmp_path / "vids"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(2):
            write_video(root / c / f"{c}{i}.mp4", rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8))
    frames = root / "b" / "b_frames"
    frames.mkdir()
    for t in range(7):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(frames / f"{t}.jpg")
    return root


def test_video_folder_classes_split_and_frame_folders(tmp_path):
    root = _video_folder(tmp_path)
    data = video_folder(str(root), clip_len=3, frame_size=16, test_fraction=0.5)
    assert data.num_classes == 2 and data.stats["class_names"] == ["a", "b"]
    assert data.stats["num_train"] + data.stats["num_test"] == 5 and data.stats["num_skipped"] == 0
    assert sorted(data.eval_train.targets + data.eval_test.targets) == [0, 0, 1, 1, 1]
    for ds in (data.eval_train, data.eval_test):
        for i in range(len(ds)):
            assert ds[i]["input"].shape == (3, 3, 16, 16)
    assert data.pretrain[0]["clip"].shape == (3, 3, 16, 16)
    assert data.find_extra(PropagationSet) is None


def test_unlabelled_folder_has_no_eval_sets(tmp_path):
    root = tmp_path / "flat"
    write_video(root / "x.mp4", np.zeros((4, 16, 16, 3), np.uint8))
    data = video_folder(str(root), clip_len=2, frame_size=16)
    assert data.eval_train is None and data.num_classes == 0 and data.pretrain[0]["label"] == -1


def test_corrupt_video_named_or_skipped_and_counted(tmp_path):
    root = _video_folder(tmp_path)
    good = (root / "a" / "a0.mp4").read_bytes()
    (root / "a" / "a_truncated.mp4").write_bytes(good[: len(good) // 3])
    with pytest.raises(CorruptFileError, match="a_truncated.mp4"):
        video_folder(str(root), clip_len=2, frame_size=16)
    data = video_folder(str(root), clip_len=2, frame_size=16, skip_bad=True, test_fraction=0.5)
    assert data.stats["num_skipped"] == 1 and data.stats["bad_files"][0].endswith("a_truncated.mp4")
    assert data.stats["num_train"] + data.stats["num_test"] == 5


def test_video_cut_at_a_packet_boundary_is_left_out_when_scanning(tmp_path):
    """Decoders open such a file as a complete, shorter video; the scan compares it with its header."""
    import av

    from tests.video.test_video_io import smooth_frames

    root = _video_folder(tmp_path)
    full = write_video(tmp_path / "full.mp4", smooth_frames(t=24, size=32), faststart=True)
    with av.open(str(full)) as container:
        ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.pos is not None]
    data = full.read_bytes()
    cut = root / "a" / "a_cut.mp4"
    cut.write_bytes(data[: min(ends, key=lambda end: abs(end - len(data) // 2))])
    with pytest.raises(CorruptFileError, match="a_cut.mp4 .truncated: container says 24 frames"):
        video_folder(str(root), clip_len=2, frame_size=16)
    data = video_folder(str(root), clip_len=2, frame_size=16, skip_bad=True, test_fraction=0.5)
    assert data.stats["num_skipped"] == 1 and data.stats["bad_files"] == [str(cut)]
    assert data.stats["num_train"] + data.stats["num_test"] == 5


def test_video_broken_after_scan_is_skipped_in_getitem(tmp_path, caplog):
    root = _video_folder(tmp_path)
    data = video_folder(str(root), clip_len=2, frame_size=16, skip_bad=True, test_fraction=0.5)
    base = data.pretrain.base
    victim = base.sources[0].path
    if victim.is_dir():
        shutil.rmtree(victim)
        victim.mkdir()
        (victim / "0.jpg").write_bytes(b"broken")
    else:
        victim.write_bytes(b"broken")
    item = data.pretrain[0]  # falls through to the next source
    assert item["clip"].shape == (2, 3, 16, 16)
    assert base.num_skipped == 1 and victim.name in caplog.text


@pytest.mark.parametrize("workers", [0, 2])
def test_video_broken_after_scan_reaches_metrics_from_loader_workers(tmp_path, workers):
    """A clip that fails only when decoded, in a data-loader worker, is counted in the stats the run
    writes to metrics.json (the worker's own count would die with it)."""
    from mmssl.pipeline import data_stats

    root = _video_folder(tmp_path)
    data = video_folder(str(root), clip_len=2, frame_size=16, skip_bad=True, test_fraction=0.5)
    assert data_stats(data)["num_skipped"] == 0
    victim = next(s.path for s in data.pretrain.base.sources if s.path.is_file())
    victim.write_bytes(b"broken")
    loader = DataLoader(data.pretrain, batch_size=2, num_workers=workers)
    assert sum(len(batch["clip"]) for batch in loader) == len(data.pretrain)
    assert data.pretrain.base.num_skipped == (1 if workers == 0 else 0)  # the main process's own count
    stats = data_stats(data)
    assert stats["bad_files"] == [str(victim)] and stats["num_skipped"] == 1
    assert stats["skipped_while_loading"] == 1 and data.stats["num_skipped"] == 0  # the bundle is unchanged


def test_short_policy_error_is_raised_at_build_time(tmp_path):
    root = _video_folder(tmp_path)
    with pytest.raises(DataError, match="needs 8"):
        video_folder(str(root), clip_len=8, frame_size=16, short="error")


def test_davis_builder_on_real_davis2016_sample():
    if not DAVIS16.is_dir():
        pytest.skip(f"real DAVIS sample not found: {DAVIS16}")
    data = davis(str(DAVIS16), clip_len=2, frame_stride=5, frame_size=32)
    assert len(data.pretrain) == 6 and data.eval_train is None and data.num_classes == 0
    item = data.pretrain[2]
    assert item["clip"].shape == (2, 3, 32, 32) and item["label"] == -1
    assert data.find_extra(PropagationSet).sequences[0] == "blackswan"
    assert len(data.find_extra(PropagationSet).sequences) == 6


def test_davis_builder_defaults_to_procedural_set(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path))
    spec_args = {k: v for k, v in TINY.items() if k != "video_size"}
    folder = build_procedural_videos(ProceduralVideoSpec(frame_size=32, **spec_args))
    assert folder.parent == tmp_path / "procedural_videos"
    data = davis(str(folder / "DAVIS"), clip_len=3, frame_size=16, num_propagation_sequences=2)
    prop = data.find_extra(PropagationSet)
    assert len(data.pretrain) == 4 and prop.sequences == ["0004_bounce", "0005_orbit"]


def _prepare_video_tool():
    from tests.data_tool import load_data_tool

    return load_data_tool("prepare_video")


def test_prepare_video_check_and_extract(tmp_path, capsys):
    tool = _prepare_video_tool()
    root = _video_folder(tmp_path)
    assert tool.main(["check", str(root)]) == 0
    assert "5 videos" in capsys.readouterr().out
    (root / "a" / "zz_broken.mp4").write_bytes(b"junk")
    assert tool.main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "zz_broken.mp4" in out and "unreadable: 1" in out
    assert (
        tool.main(["extract", str(root), str(tmp_path / "frames"), "--every", "2"]) == 1
    )  # names the bad one
    extracted = tmp_path / "frames" / "a" / "a0"
    assert len(list(extracted.glob("*.jpg"))) == 3  # 6 frames, every 2nd
    data = video_folder(str(tmp_path / "frames"), clip_len=2, frame_size=16, test_fraction=0.5)
    assert data.stats["num_train"] + data.stats["num_test"] == 4  # the mp4s as frame folders
    davis_root, _ = _tiny_davis(tmp_path)
    assert tool.main(["check", str(davis_root)]) == 0
    assert "palette ids (DAVIS-2017)" in capsys.readouterr().out


def _tiny_davis(tmp_path: Path):
    spec = ProceduralVideoSpec(num_videos=4, num_heldout=2, num_frames=3, frame_size=16, num_classes=2)
    folder = build_procedural_videos(spec, tmp_path / "cache")
    return folder / "DAVIS", spec
