"""Video / frame-folder / mask reading and writing, against PyAV, PIL and known values."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.video.io import (
    davis_palette,
    list_davis_sequences,
    list_frames,
    load_davis_sequence,
    read_frame_folder,
    read_mask,
    read_video,
    video_info,
    write_palette_mask,
    write_video,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
CLIPS = SHARED / "short_clips"
DAVIS16 = SHARED / "DAVIS"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real video sample not found: {path}")
    return path


def smooth_frames(t: int = 12, size: int = 64, seed: int = 0) -> np.ndarray:
    """Codec-friendly test frames: a moving colour gradient plus a bright square; each frame distinct."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    base = rng.uniform(40, 200, size=3)
    for i in range(t):
        img = base + 40 * np.sin((x + 3 * i) / 9.0)[..., None] * np.array([1.0, -0.5, 0.3])
        img[10 + i : 26 + i, 20:36] = (240, 230, 20)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


# ------------------------------------------------------------------------------------- real clips


@pytest.mark.parametrize("name", ["squirrel.mp4", "squirrel_no_audio.mp4"])
def test_real_clip_info_and_frames_agree_with_pyav(name):
    path = _need(CLIPS / name)
    info = video_info(path)
    assert (info.num_frames, info.height, info.width) == (250, 720, 1280)
    assert info.fps == pytest.approx(25.0)
    frames = read_video(path, [0, 124, 249])
    assert frames.shape == (3, 720, 1280, 3) and frames.dtype == torch.uint8
    # Independent decoder: PyAV's first frame must match decord's up to colour-conversion rounding.
    with av.open(str(path)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(first.astype(int) - frames[0].numpy().astype(int)).mean() < 3.0


def test_real_clip_scaled_decode_matches_full_decode_resized():
    path = _need(CLIPS / "squirrel.mp4")
    small = read_video(path, [10], size=(72, 128))
    assert small.shape == (1, 72, 128, 3)
    full = read_video(path, [10]).permute(0, 3, 1, 2).float()
    ref = torch.nn.functional.interpolate(full, size=(72, 128), mode="area")[0].permute(1, 2, 0)
    assert (small[0].float() - ref).abs().mean() < 6.0


def test_out_of_range_index_names_the_file():
    path = _need(CLIPS / "squirrel_no_audio.mp4")
    with pytest.raises(DataError, match="squirrel_no_audio.mp4"):
        read_video(path, [250])


# ----------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "suffix,chroma", [(".mp4", "420"), (".mp4", "444"), (".mkv", "420"), (".avi", "420"), (".webm", "420")]
)
def test_write_read_round_trip(tmp_path, suffix, chroma):
    frames = smooth_frames()
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=8, chroma=chroma)
    back = read_video(path).numpy().astype(int)
    assert back.shape == frames.shape
    # Lossy codecs: close on average, and frame i is closer to original i than to any other frame.
    assert np.abs(back - frames).mean() < 4.0
    dist = np.abs(back[:, None] - frames[None].astype(int)).mean(axis=(2, 3, 4))
    assert (dist.argmin(axis=1) == np.arange(len(frames))).all()
    assert video_info(path).fps == pytest.approx(8.0)


@pytest.mark.parametrize("width", [16, 24, 48])
def test_narrow_frames_decode_like_pyav(tmp_path, width):
    # Widths whose padded FFmpeg rows are a multiple of the width trip a decord bug (see io.py).
    frames = np.random.default_rng(width).integers(0, 256, (3, 32, width, 3), dtype=np.uint8)
    path = write_video(tmp_path / "narrow.mp4", frames)
    with av.open(str(path)) as container:
        ref = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert np.array_equal(read_video(path, [2, 0]).numpy(), ref[[2, 0]])


def test_write_video_rejects_odd_sizes_and_bad_dtype(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 15, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 16, 16, 3), np.float32))


def test_frame_folder_natural_order_indices_and_resize(tmp_path):
    frames = smooth_frames(t=12, size=32)
    for i, f in enumerate(frames):  # unpadded names: "frame10" must come after "frame9"
        Image.fromarray(f).save(tmp_path / f"frame{i}.png")
    assert [p.stem for p in list_frames(tmp_path)] == [f"frame{i}" for i in range(12)]
    assert torch.equal(read_frame_folder(tmp_path), torch.from_numpy(frames))  # PNG is lossless
    sub = read_frame_folder(tmp_path, [11, 0, 0])
    assert torch.equal(sub, torch.from_numpy(frames[[11, 0, 0]]))
    assert read_frame_folder(tmp_path, [3], size=(16, 24)).shape == (1, 16, 24, 3)


# -------------------------------------------------------------------------------- corrupt input


def test_garbage_file_error_names_it(tmp_path):
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a movie" * 10)
    with pytest.raises(CorruptFileError, match="not_a_video.mp4") as info:
        read_video(bad)
    assert info.value.path == bad


def test_truncated_file_error_names_it(tmp_path):
    good = write_video(tmp_path / "good.mp4", smooth_frames(t=16))
    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.mp4"):
        read_video(cut)


def _packet_ends(path: Path) -> list[int]:
    """Byte offsets where the video packets of ``path`` end (a cut there leaves no partial packet)."""
    with av.open(str(path)) as container:
        packets = container.demux(container.streams.video[0])
        return sorted(p.pos + p.size for p in packets if p.pos is not None and p.pos >= 0)


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_mp4_with_its_index_in_front_cut_in_half_is_named_as_truncated(tmp_path, backend):
    """The index (moov) at the front, the file cut in half at a packet boundary: both decoders open it
    as a complete 4-frame video. The header still says 24 frames / 3 s, and that is compared."""
    good = write_video(tmp_path / "good.mp4", smooth_frames(t=24), fps=8, faststart=True)
    data = good.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: the index comes first
    half = min(_packet_ends(good), key=lambda end: abs(end - len(data) // 2))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:half])
    expected = (
        f"corrupt or unreadable file: {cut} (truncated: container says 24 frames / 3.000 s, "
        "only 4 decodable (up to 0.500 s))"
    )
    for read in (video_info, read_video):
        with pytest.raises(CorruptFileError) as info:
            read(cut, backend=backend)
        assert info.value.path == cut and str(info.value) == expected
    assert (
        video_info(good, backend).num_frames == 24 and read_video(good, [23], backend=backend).shape[0] == 1
    )
    cut.write_bytes(data[: len(data) // 2])  # cut inside a packet: an error naming the file, too
    with pytest.raises(CorruptFileError, match="cut.mp4"):
        read_video(cut, backend=backend)


@pytest.mark.parametrize(
    "suffix, says",
    [
        (".mkv", "3.000 s, only 20 decodable (up to 2.500 s)"),
        (".avi", "24 frames / 2.750 s, only 19 decodable"),
    ],
)
def test_other_containers_cut_short_are_named_as_truncated(tmp_path, suffix, says):
    """Matroska declares no frame count, only a duration: the end of the last frame is compared."""
    good = write_video(tmp_path / f"good{suffix}", smooth_frames(t=24), fps=8)
    data = good.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(CorruptFileError, match=re.escape(f"truncated: container says {says}")):
        video_info(cut)
    assert video_info(good).num_frames == 24


def test_truncated_real_clip_error_names_it(tmp_path):
    src = _need(CLIPS / "squirrel_no_audio.mp4")
    cut = tmp_path / "squirrel_cut.mp4"
    cut.write_bytes(src.read_bytes()[:400_000])
    with pytest.raises(CorruptFileError, match="squirrel_cut.mp4"):
        read_video(cut)


def test_corrupt_frame_in_folder_is_named(tmp_path):
    for i, f in enumerate(smooth_frames(t=3, size=16)):
        Image.fromarray(f).save(tmp_path / f"{i:05d}.jpg")
    (tmp_path / "00001.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    with pytest.raises(CorruptFileError, match="00001.jpg"):
        read_frame_folder(tmp_path)


# ------------------------------------------------------------------------------------------ masks


def test_davis_palette_known_colours():
    pal = davis_palette()
    expected = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128)]
    assert [tuple(c) for c in pal[:7]] == expected
    assert tuple(pal[8]) == (64, 0, 0) and tuple(pal[255]) == (224, 224, 192)
    assert len({tuple(c) for c in pal}) == 256


def test_palette_png_written_by_pil_reads_as_ids(tmp_path):
    ids = np.zeros((20, 30), dtype=np.uint8)
    ids[2:8, 3:9], ids[10:18, 5:25], ids[0, 29] = 1, 2, 7
    img = Image.fromarray(ids, mode="P")
    img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
    img.save(tmp_path / "m.png")  # any palette: the stored indices are the ids
    assert np.array_equal(read_mask(tmp_path / "m.png"), ids.astype(np.int64))
    # Our writer, read back by PIL: mode P, indices preserved, the DAVIS colours.
    write_palette_mask(tmp_path / "w.png", ids)
    with Image.open(tmp_path / "w.png") as back:
        assert back.mode == "P" and np.array_equal(np.asarray(back), ids)
        assert back.getpalette()[3:6] == [128, 0, 0]
    # The same mask rendered to RGB in the DAVIS colours maps back to the ids.
    rgb = davis_palette()[ids]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), ids.astype(np.int64))


def test_davis2016_grayscale_masks_become_object_one():
    root = _need(DAVIS16)
    seq = load_davis_sequence(root, "blackswan", max_frames=3)
    assert seq.frames.shape == (3, 480, 854, 3) and seq.masks.shape == (3, 480, 854)
    assert seq.num_objects == 1 and seq.frame_names == ["00000", "00001", "00002"]
    with Image.open(root / "Annotations" / "480p" / "blackswan" / "00002.png") as raw:
        assert raw.mode == "L"
        raw_array = np.asarray(raw)
    assert set(np.unique(raw_array)) <= {0, 255}
    assert np.array_equal(seq.masks[2].numpy(), (raw_array == 255).astype(np.int64))
    assert 0 < seq.masks[0].float().mean() < 0.5  # a swan, not the whole frame


def test_real_davis_listing_without_imagesets():
    root = _need(DAVIS16)
    names = ["blackswan", "car-shadow", "dog", "horsejump-high", "kite-surf", "libby"]
    assert list_davis_sequences(root) == names
    assert list_davis_sequences(root, split="val") == names  # no ImageSets: every folder


def _davis2017(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A two-sequence DAVIS-2017 root with 3-object palette masks; frame 3 of 'b' unannotated."""
    root = tmp_path / "DAVIS"
    rng = np.random.default_rng(0)
    ids = np.zeros((4, 24, 40), dtype=np.uint8)
    for t in range(4):
        ids[t, 2 + t : 10 + t, 3:12] = 1
        ids[t, 12:20, 10 + 2 * t : 22 + 2 * t] = 2
        ids[t, 5:9, 30:36] = 3
    for seq in ("a", "b"):
        for t in range(4):
            frame = rng.integers(0, 255, size=(24, 40, 3), dtype=np.uint8)
            (root / "JPEGImages" / "480p" / seq).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
            if not (seq == "b" and t == 3):
                write_palette_mask(root / "Annotations" / "480p" / seq / f"{t:05d}.png", ids[t])
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("b\n")
    (root / "ImageSets" / "2017" / "train.txt").write_text("a\n")
    return root, ids


def test_davis2017_palette_sequence(tmp_path):
    root, ids = _davis2017(tmp_path)
    assert list_davis_sequences(root) == ["a", "b"]
    assert list_davis_sequences(root, split="val") == ["b"]
    seq = load_davis_sequence(root, "a")
    assert seq.num_objects == 3 and seq.masks.dtype == torch.int64
    assert np.array_equal(seq.masks.numpy(), ids.astype(np.int64))
    unannotated = load_davis_sequence(root, "b")
    assert (unannotated.masks[3] == -1).all() and np.array_equal(unannotated.masks[0].numpy(), ids[0])


def test_davis_resize_is_nearest_for_masks(tmp_path):
    root, ids = _davis2017(tmp_path)
    seq = load_davis_sequence(root, "a", size=(12, 20), max_frames=2)
    assert seq.frames.shape == (2, 12, 20, 3) and seq.masks.shape == (2, 12, 20)
    assert set(seq.masks.unique().tolist()) == {0, 1, 2, 3}  # no blended ids
    # Nearest-exact halving picks source pixel (2i+1, 2j+1), pixel-centre aligned.
    assert np.array_equal(seq.masks[1].numpy(), ids[1][1::2, 1::2])


def test_davis_split_file_listing_a_missing_sequence_is_named(tmp_path):
    root, _ = _davis2017(tmp_path)
    (root / "ImageSets" / "2017" / "val.txt").write_text("b\nghost\n")
    with pytest.raises(DataError, match="ghost"):
        list_davis_sequences(root, split="val")
