"""WebDataset shards: writing from every modality's folders, reading back, the rank/worker split, and exact
resume of the stream (by itself and through the trainer)."""

from __future__ import annotations

import io
import itertools
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data_tools.make_shards import main as make_shards
from mmssl.core.method import Method
from mmssl.data.shards import (
    ShardSamples,
    ShardSetWriter,
    ShardStream,
    iter_records,
    read_manifest,
    worker_share,
)
from mmssl.errors import ConfigError, CorruptFileError, DataError
from mmssl.modalities.image.datasets import image_files
from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.config import TrainConfig
from mmssl.train.trainer import Trainer


def _png(path, seed: int, size: int = 8) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _source(kind: str, root) -> list[str]:
    """A small labelled folder (two classes) of ``kind`` files; returns the relative paths written."""
    written = []
    for c, cls in enumerate(("cat", "dog")):
        for i in range(3):
            stem = root / cls / f"{cls}{i}"
            seed = 10 * c + i
            if kind == "image":
                path = stem.with_suffix(".png")
                _png(path, seed)
            elif kind == "video":
                from mmssl.modalities.video.io import write_video

                path = stem.with_suffix(".mp4")
                path.parent.mkdir(parents=True, exist_ok=True)
                frames = np.random.default_rng(seed).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
                write_video(path, frames)
            elif kind == "audio":
                path = stem.with_suffix(".wav")
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, 800).astype(np.float32), 8000)
            elif kind == "points":
                from mmssl.modalities.pointcloud.io import write_points

                path = stem.with_suffix(".xyz")
                path.parent.mkdir(parents=True, exist_ok=True)
                write_points(path, np.random.default_rng(seed).normal(size=(20, 3)).astype(np.float32))
            elif kind == "mesh":
                from mmssl.modalities.pointcloud.io import write_mesh

                path = stem.with_suffix(".obj")
                path.parent.mkdir(parents=True, exist_ok=True)
                v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) * (1 + seed)
                write_mesh(path, v, np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
            else:
                path = stem.with_suffix(".txt")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"document {seed}: the {cls} sat on the mat.\n")
            written.append(path.relative_to(root).as_posix())
    return written


@pytest.mark.parametrize("kind", ["image", "video", "audio", "points", "mesh", "text"])
def test_every_modality_round_trips_through_shards(tmp_path, kind):
    src, out = tmp_path / "src", tmp_path / "shards"
    files = _source(kind, src)
    assert make_shards([kind, str(src), str(out), "--labelled", "--max-samples", "4"]) == 0
    manifest = read_manifest(out, modality=kind)
    assert manifest.classes == ["cat", "dog"]
    assert [s.samples for s in manifest.shards] == [4, 2]
    seen = {}
    for shard in manifest.shards:
        for record in iter_records(manifest.path(shard)):
            meta = json.loads(record["json"])
            member = meta["path"].rsplit(".", 1)[1]
            assert record[member] == (src / meta["path"]).read_bytes()  # bytes unchanged
            assert manifest.classes[int(record["cls"])] == meta["class"] == meta["path"].split("/")[0]
            seen[meta["path"]] = record["__key__"]
    assert sorted(seen) == sorted(files)  # every file exactly once
    assert sorted(seen.values()) == [f"{i:09d}" for i in range(len(files))]


def test_members_have_plain_headers(tmp_path):
    """One 512-byte header per member: a fractional mtime (TarWriter's default) made tarfile put a PAX header
    before each, doubling what a small record costs to store and to read."""
    writer = ShardSetWriter(tmp_path / "set", modality="image")
    for i in range(3):
        writer.write({"__key__": f"{i:06d}", "jpg": b"x" * 100, "cls": b"1"})
    writer.close()
    with tarfile.open(tmp_path / "set" / "shard-000000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"{i:06d}.{e}" for i in range(3) for e in ("cls", "jpg")]
    assert all(m.pax_headers == {} for m in members)
    assert [m.offset for m in members] == [1024 * i for i in range(6)]  # header + one padded block each


def test_jsonl_lines_become_records(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "docs.jsonl").write_text('{"text": "first"}\n\n{"text": "second"}\n')
    assert make_shards(["text", str(src), str(tmp_path / "out"), "--no-shuffle"]) == 0
    manifest = read_manifest(tmp_path / "out")
    texts = [r["txt"].decode() for r in iter_records(manifest.path(manifest.shards[0]))]
    assert texts == ["first", "second"]


def test_bad_files_stop_the_run_or_are_skipped_and_listed(tmp_path, capsys):
    src = tmp_path / "src"
    _source("image", src)
    (src / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    assert make_shards(["image", str(src), str(tmp_path / "a"), "--labelled"]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert not list((tmp_path / "a").glob("*.tar"))  # nothing half-written is left
    assert make_shards(["image", str(src), str(tmp_path / "b"), "--labelled", "--skip-bad"]) == 0
    assert "skipped 1 bad file" in capsys.readouterr().out
    assert read_manifest(tmp_path / "b").num_samples == 6


def test_a_finished_set_is_not_overwritten_by_accident(tmp_path):
    src = tmp_path / "src"
    _source("text", src)
    assert make_shards(["text", str(src), str(tmp_path / "out")]) == 0
    assert make_shards(["text", str(src), str(tmp_path / "out")]) == 1
    assert make_shards(["text", str(src), str(tmp_path / "out"), "--overwrite"]) == 0


def test_members_escaping_the_folder_are_refused(tmp_path):
    shard = tmp_path / "evil.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("../000000.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(CorruptFileError, match="parent path"):
        list(iter_records(shard))


def test_truncated_shard_is_named(tmp_path):
    src = tmp_path / "src"
    _source("image", src)
    make_shards(["image", str(src), str(tmp_path / "out"), "--labelled"])
    shard = tmp_path / "out" / "shard-000000.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(CorruptFileError, match="shard-000000.tar"):
        list(iter_records(shard, expected=6))


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="shard manifest not found"):
        read_manifest(tmp_path)
    (tmp_path / "shards.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="'format'"):
        read_manifest(tmp_path)


# ---------------------------------------------------------------------------------------------- the stream
def _numbered_set(tmp_path, sizes: list[int]) -> ShardSamples:
    """Shards holding records 0..N-1 (``n`` member = the number), ``sizes[i]`` records in shard i."""
    writer = ShardSetWriter(tmp_path / "set", modality="numbers", max_samples=max(sizes))
    n = 0
    for size in sizes:
        for _ in range(size):
            writer.write({"__key__": f"{n:06d}", "n": str(n).encode()})
            n += 1
        writer._finish_current()  # cut here, to get uneven shards
    manifest = writer.close()
    assert [s.samples for s in manifest.shards] == sizes
    return ShardSamples(manifest, lambda record, where: int(record["n"]))


class Numbered(Dataset):
    """Items ``(index, decoded number, a random draw)``: the draw shows the per-sample seeding."""

    def __init__(self, samples: ShardSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return torch.tensor([index, self.samples[index], torch.randint(0, 10**6, ()).item()])


@pytest.mark.parametrize("readers", [1, 2, 3, 5])
def test_readers_split_each_epoch_without_overlap_or_loss(tmp_path, readers):
    samples = _numbered_set(tmp_path, [5, 3, 7, 4, 6])
    stream = ShardStream(Numbered(samples), samples, seed=1, shuffle_buffer=4)
    seen = []
    for reader in range(readers):
        shards = stream.epoch_shards(0, reader, readers)
        in_epoch = sum(samples.manifest.shards[s].samples for s in shards)
        keys = stream.reader_stream(reader, readers)
        epoch0 = [next(keys) for _ in range(in_epoch)]
        assert {e for _, e in epoch0} == {0}
        assert next(keys)[1] == 1  # then the next epoch, endlessly
        seen += [i for i, _ in epoch0]
    assert sorted(seen) == list(range(25))
    with pytest.raises(DataError, match="fewer than the 6 readers"):
        stream.epoch_shards(0, 0, 6)


def test_epochs_are_shuffled_differently_and_blocks_mix_shards(tmp_path):
    samples = _numbered_set(tmp_path, [6, 6, 6, 6])
    stream = ShardStream(Numbered(samples), samples, seed=0, shuffle_buffer=12)
    keys = stream.reader_stream(0, 1)
    epoch0, epoch1 = ([next(keys)[0] for _ in range(24)] for _ in range(2))
    assert sorted(epoch0) == sorted(epoch1) == list(range(24))
    assert epoch0 != epoch1
    assert len({i // 6 for i in epoch0[:6]}) == 2  # a block of 12 holds two shards, shuffled together


def test_worker_share_adds_up():
    for workers in (1, 2, 3):
        for batches in range(12):
            shares = [worker_share(batches, w, workers) for w in range(workers)]
            assert sum(shares) == batches
            assert max(shares) - min(shares) <= 1


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_stream_continues_exactly(tmp_path, num_workers):
    samples = _numbered_set(tmp_path, [9, 7, 8, 6])
    stream = ShardStream(Numbered(samples), samples, seed=3, shuffle_buffer=5)

    def batches(start: int, count: int) -> list[torch.Tensor]:
        stream.configure(rank=0, world_size=1, batch_size=4, start_batches=start)
        loader = iter(DataLoader(stream, batch_size=4, num_workers=num_workers))
        return [next(loader) for _ in range(count)]

    straight = batches(0, 20)  # 80 samples: past the end of the first epoch (30)
    for start in (0, 3, 7, 8, 13):
        resumed = batches(start, 20 - start)
        assert all(torch.equal(a, b) for a, b in zip(resumed, straight[start:]))
    idx = torch.cat(straight)[:, 0]
    assert torch.equal(torch.cat(straight)[:, 1], idx)  # the decoded sample is the one indexed


def test_two_ranks_read_disjoint_samples(tmp_path):
    samples = _numbered_set(tmp_path, [5, 5, 5, 5])
    stream = ShardStream(Numbered(samples), samples, seed=0, shuffle_buffer=3)
    per_rank = []
    for rank in (0, 1):
        stream.configure(rank=rank, world_size=2, batch_size=5)
        loader = iter(DataLoader(stream, batch_size=5))
        per_rank.append(torch.cat([next(loader) for _ in range(2)])[:, 0].tolist())
    assert sorted(per_rank[0] + per_rank[1]) == list(range(20))


# ---------------------------------------------------------------------------------------------- trainer
class TinyImageMethod(Method):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(3 * 8 * 8, 4)

    def forward(self, batch):
        a, b = (self.encoder(v.flatten(1)) for v in batch["views"])
        return {"loss": (a - b).pow(2).mean() + 0.01 * a.pow(2).mean()}


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, lr=0.1, ckpt_every=2, log_every=1, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def _fit(bundle, cfg, run_dir, resume=None, method=None):
    method = method or TinyImageMethod()
    trainer = Trainer(
        cfg, method, bundle.pretrain, run_dir=run_dir, resume=resume, batch_transform=bundle.batch_transform
    )
    trainer.fit()
    return method


def test_trainer_resumes_a_shard_stream_exactly(tmp_path):
    src = tmp_path / "src"
    for i in range(40):
        _png(src / f"img{i:02d}.png", i)
    make_shards(["image", str(src), str(tmp_path / "shards"), "--max-samples", "8"])
    bundle = image_files(shards=str(tmp_path / "shards"), image_size=8, shuffle_buffer=6)
    assert bundle.stats["num_shards"] == 5 and bundle.stats["num_pretrain"] == 40

    cfg = _cfg(num_workers=2)
    straight = _fit(bundle, cfg, tmp_path / "s")

    class Killed(Exception):
        pass

    def die_during_step_5(step, total):  # after step 4's checkpoint
        if step == 5:
            raise Killed

    part = TinyImageMethod()
    part.on_train_step_end = die_during_step_5
    with pytest.raises(Killed):
        _fit(bundle, cfg, tmp_path / "p", method=part)
    position = load_checkpoint(tmp_path / "p" / "checkpoints" / "last.pt")["data_position"]
    assert position == {"batches": 4, "batch_size": 4, "num_workers": 2, "world_size": 1}
    with pytest.raises(ValueError, match="train.num_workers"):
        _fit(bundle, _cfg(num_workers=0), tmp_path / "p", resume="auto")
    resumed = _fit(bundle, cfg, tmp_path / "p", resume="auto")
    assert torch.equal(resumed.encoder.weight, straight.encoder.weight)


def test_image_files_takes_images_or_shards(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of data.images"):
        image_files()
    with pytest.raises(ConfigError, match="got both"):
        image_files(images="a", shards="b")
    shards = [{"name": "x.tar", "samples": 1}]
    manifest = {"format": "mmssl-shards/1", "modality": "video", "shards": shards}
    (tmp_path / "shards.json").write_text(json.dumps(manifest))
    (tmp_path / "x.tar").write_bytes(b"")
    with pytest.raises(DataError, match="this dataset reads 'image'"):
        image_files(shards=str(tmp_path))


def test_pixel_shards_hold_the_decoded_images_and_stream_the_same_samples(tmp_path):
    """``--pixels`` stores each image as its decoder returns it (``.npy``, no JPEG/PNG left): the stream
    yields the same tensors, in the same order, as the shards of the encoded files."""
    from mmssl.modalities.image.folder import load_image

    src = tmp_path / "src"
    _source("image", src)
    _png(src / "cat" / "wide.png", 99, size=5)  # not square: the stored shape is the image's own
    assert make_shards(["image", str(src), str(tmp_path / "files"), "--max-samples", "3"]) == 0
    assert make_shards(["image", str(src), str(tmp_path / "pixels"), "--max-samples", "3", "--pixels"]) == 0
    manifest = read_manifest(tmp_path / "pixels", modality="image")
    for shard in manifest.shards:
        for record in iter_records(manifest.path(shard)):
            assert sorted(k for k in record if not k.startswith("__")) == ["json", "npy"]
            path = src / json.loads(record["json"])["path"]
            assert (
                np.load(io.BytesIO(record["npy"]), allow_pickle=False).tobytes()
                == load_image(path).numpy().tobytes()
            )

    def stream(name):
        pretrain = image_files(shards=str(tmp_path / name), image_size=8, shuffle_buffer=4).pretrain
        pretrain.configure(rank=0, world_size=1, batch_size=2)
        return [(item["index"], item["images"]) for item in itertools.islice(pretrain, 7)]  # one epoch

    from_files, from_pixels = stream("files"), stream("pixels")
    assert sorted(index for index, _ in from_pixels) == list(range(7))
    assert [i for i, _ in from_files] == [i for i, _ in from_pixels]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(from_files, from_pixels, strict=True))


def test_pixels_members_that_are_not_uint8_images_are_refused():
    from mmssl.modalities.image.shards import decode_image_record, encode_pixels

    def record(array) -> dict:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        return {"__key__": "000000000", "npy": buffer.getvalue()}

    image = torch.arange(24, dtype=torch.uint8).reshape(3, 2, 4)
    assert torch.equal(decode_image_record({"npy": encode_pixels(image)}, "s.tar:0")[0], image)
    with pytest.raises(CorruptFileError, match=r"s.tar:0.*uint8 \[3, H, W\], got float32"):
        decode_image_record(record(np.zeros((3, 2, 2), np.float32)), "s.tar:0")
    with pytest.raises(CorruptFileError, match=r"s.tar:0.*got uint8 \[2, 2\]"):
        decode_image_record(record(np.zeros((2, 2), np.uint8)), "s.tar:0")
    with pytest.raises(CorruptFileError, match=r"s.tar:0.*got object"):  # never unpickled
        decode_image_record(record(np.array([{"payload": 1}], dtype=object)), "s.tar:0")
    with pytest.raises(CorruptFileError, match=r"s.tar:0.*holds 23 bytes, not 24"):
        decode_image_record({"npy": encode_pixels(image)[:-1]}, "s.tar:0")
    fortran = io.BytesIO()
    np.save(fortran, np.asfortranarray(image.numpy()))
    assert torch.equal(decode_image_record({"npy": fortran.getvalue()}, "s.tar:0")[0], image)
    with pytest.raises(CorruptFileError, match=r"s.tar:0.*not a .npy image"):
        decode_image_record({"npy": b"\x93NUMPY truncated"}, "s.tar:0")
    with pytest.raises(CorruptFileError, match="exactly one image member"):
        decode_image_record({"npy": encode_pixels(image), "png": b""}, "s.tar:0")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (3, -2, -4), }", r"got uint8 \[3, -2, -4\]"),
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (3, True, 8), }", r"got uint8 \[3, True, 8\]"),
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 4", "not a .npy image"),
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 4), 'x': f(), }", "not a .npy image"),
        ("[1, 2, 3]", "not a .npy image"),
    ],
)
def test_pixels_members_with_forged_headers_are_refused(header, message):
    """Headers np.save never writes (built by hand, as a hostile or broken file would hold them): each is a
    named CorruptFileError, never a NumPy exception or an array of a nonsensical shape."""
    from mmssl.modalities.image.shards import decode_image_record

    body = (header + " " * (-(len(header) + 11) % 64) + "\n").encode("latin1")
    data = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + bytes(24)
    with pytest.raises(CorruptFileError, match="s.tar:0.*" + message):
        decode_image_record({"npy": data}, "s.tar:0")


def test_pixels_members_of_an_unknown_format_version_are_refused():
    from mmssl.modalities.image.shards import decode_image_record, encode_pixels

    data = bytearray(encode_pixels(torch.zeros(3, 2, 4, dtype=torch.uint8)))
    data[7] = 1  # format 1.1: not a version NumPy has written
    with pytest.raises(CorruptFileError, match=r"s.tar:0.*format version 1.1"):
        decode_image_record({"npy": bytes(data)}, "s.tar:0")


def test_no_meta_drops_only_the_json_member_and_streams_the_same_samples(tmp_path):
    """``--no-meta`` writes one member fewer a record (no ``.json``) with the same keys, classes (``.cls``)
    and pixels, and the stream yields the same indices and images, in the same order, as the set with
    metadata."""
    src = tmp_path / "src"
    _source("image", src)
    common = ["--max-samples", "4", "--pixels", "--labelled"]
    assert make_shards(["image", str(src), str(tmp_path / "meta"), *common]) == 0
    assert make_shards(["image", str(src), str(tmp_path / "bare"), *common, "--no-meta"]) == 0
    manifests = {name: read_manifest(tmp_path / name, modality="image") for name in ("meta", "bare")}
    assert manifests["bare"].fields == ["cls", "npy"] and "json" in manifests["meta"].fields

    def records(name):
        manifest = manifests[name]
        return [r for shard in manifest.shards for r in iter_records(manifest.path(shard))]

    with_meta, bare = records("meta"), records("bare")
    assert [sorted(k for k in r if not k.startswith("__")) for r in bare] == [["cls", "npy"]] * 6
    for a, b in zip(with_meta, bare, strict=True):
        assert (a["__key__"], a["cls"], a["npy"]) == (b["__key__"], b["cls"], b["npy"])
        assert json.loads(a["json"])["class"] == ("cat", "dog")[int(b["cls"])]

    def stream(name):
        pretrain = image_files(shards=str(tmp_path / name), image_size=8, shuffle_buffer=4).pretrain
        pretrain.configure(rank=0, world_size=1, batch_size=2)
        return [(item["index"], item["images"]) for item in itertools.islice(pretrain, 12)]  # two epochs

    for (i, a), (j, b) in zip(stream("meta"), stream("bare"), strict=True):
        assert i == j and torch.equal(a, b)


def test_no_meta_is_refused_for_text(tmp_path, capsys):
    """A text record's ``.json`` is not provenance only: it marks a JSONL line, read as one unit."""
    with pytest.raises(SystemExit):
        make_shards(["text", str(tmp_path), str(tmp_path / "out"), "--no-meta"])
    assert "--no-meta: a text record's .json marks a JSONL line" in capsys.readouterr().err


def test_pixels_is_for_images_only(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_shards(["text", str(tmp_path), str(tmp_path / "out"), "--pixels"])
    assert "--pixels applies to images" in capsys.readouterr().err


def _video_shards(tmp_path, max_samples: int = 2):
    src, out = tmp_path / "videos", tmp_path / "video_shards"
    _source("video", src)
    assert make_shards(["video", str(src), str(out), "--max-samples", str(max_samples)]) == 0
    return src, out


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_a_video_decodes_the_same_from_a_shard_as_from_its_file(tmp_path, backend):
    from mmssl.modalities.video.io import read_video, video_info

    src, out = _video_shards(tmp_path)
    manifest = read_manifest(out, modality="video")
    record = next(iter_records(manifest.path(manifest.shards[0])))
    path = src / json.loads(record["json"])["path"]
    where = f"{manifest.path(manifest.shards[0])}:{record['__key__']}"
    assert video_info(where, backend, data=record["mp4"]) == video_info(path, backend)
    from_memory = read_video(where, [3, 0, 2], size=(8, 12), backend=backend, data=record["mp4"])
    assert torch.equal(from_memory, read_video(path, [3, 0, 2], size=(8, 12), backend=backend))
    with pytest.raises(CorruptFileError, match=r"video_shards/shard-000000.tar:000000000"):
        read_video(where, [0], backend=backend, data=record["mp4"][:100])


@pytest.mark.parametrize("views", [None, "two_clips"])
def test_video_folder_streams_shards_once_per_epoch_over_workers(tmp_path, views):
    from mmssl.modalities.video.datasets import video_folder

    _, out = _video_shards(tmp_path, max_samples=3)  # 6 videos in 2 shards: one per worker and epoch
    data = video_folder(shards=str(out), clip_len=2, frame_size=8, views=views, shuffle_buffer=2)
    assert (data.eval_train, data.num_classes, data.stats["num_train"]) == (None, 0, 6)
    stream = data.pretrain
    stream.configure(rank=0, world_size=1, batch_size=3)
    loader = DataLoader(stream, batch_size=3, num_workers=2)
    batches = [b for _, b in zip(range(4), loader)]  # 12 items = 2 epochs
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(indices[:6]) == sorted(indices[6:]) == list(range(6))
    if views is None:
        assert batches[0]["clip"].shape == (3, 2, 3, 8, 8)  # [B, T, C, H, W]
    else:
        assert len(batches[0]["views"]) == 2 and batches[0]["views"][0].shape == (3, 2, 3, 8, 8)


def test_video_folder_takes_root_or_shards(tmp_path):
    from mmssl.config import from_dict

    recipe = {
        "name": "v",
        "modality": "video",
        "method": {"name": "simclr"},
        "encoder": {"name": "video_cnn"},
        "data": {"name": "video_folder", "root": "a", "shards": "b"},
        "train": {"steps": 1, "batch_size": 2},
    }
    with pytest.raises(ConfigError, match="not both"):
        from_dict(recipe)


def _recipe(modality: str, method: str, encoder: str, data: dict, **eval_section) -> dict:
    """A recipe for the load-time checks (nothing is built)."""
    return {
        "name": "r",
        "modality": modality,
        "method": {"name": method},
        "encoder": {"name": encoder},
        "data": data,
        "train": {"steps": 1, "batch_size": 2},
        **({"eval": eval_section} if eval_section else {}),
    }


def _epochs_over_two_workers(stream, batch_size: int, batches: int) -> list[dict]:
    """``batches`` batches of ``stream`` read by a 2-worker DataLoader (as the trainer configures it)."""
    stream.configure(rank=0, world_size=1, batch_size=batch_size)
    loader = DataLoader(stream, batch_size=batch_size, num_workers=2)
    return [b for _, b in zip(range(batches), loader)]


# ---------------------------------------------------------------------------------------------- audio
def test_an_audio_clip_decodes_the_same_from_a_shard_as_from_its_file(tmp_path):
    from mmssl.modalities.audio.clips import AudioClips
    from mmssl.modalities.audio.shards import decode_audio_record

    src, out = tmp_path / "src", tmp_path / "audio_shards"
    _source("audio", src)
    assert make_shards(["audio", str(src), str(out), "--max-samples", "3"]) == 0
    manifest = read_manifest(out, modality="audio")
    clips = AudioClips([(p, 0) for p in sorted(src.rglob("*.wav"))], sample_rate=16000)  # resampled from 8k
    for shard in manifest.shards:
        for record in iter_records(manifest.path(shard)):
            where = f"{manifest.path(shard)}:{record['__key__']}"
            wave, label = decode_audio_record(record, where, sample_rate=16000)
            path = src / json.loads(record["json"])["path"]
            assert label == -1 and torch.equal(wave, clips.read(path))
    cut = {**record, "wav": record["wav"][: len(record["wav"]) // 2]}  # the header declares more frames
    with pytest.raises(CorruptFileError, match=rf"audio_shards/shard-000001.tar:{record['__key__']}.wav"):
        decode_audio_record(cut, where, sample_rate=16000)


def _fsdd_folder(root) -> None:
    """Two speakers x two digits x recordings 0 and 5 (index 0: official test, 5: train)."""
    root.mkdir(parents=True)
    for n, (digit, speaker, index) in enumerate(
        (d, s, i) for d in (0, 1) for s in ("ann", "bob") for i in (0, 5)
    ):
        wave = np.random.default_rng(n).uniform(-0.5, 0.5, 400 + 50 * n).astype(np.float32)
        sf.write(root / f"{digit}_{speaker}_{index}.wav", wave, 8000)


@pytest.mark.parametrize("views", [None, "crops"])
def test_audio_datasets_stream_shards_once_per_epoch_over_workers(tmp_path, views):
    from mmssl.modalities.audio.esc50 import audio_folder_csv
    from mmssl.modalities.audio.fsdd import fsdd

    _fsdd_folder(tmp_path / "fsdd")
    out = tmp_path / "audio_shards"
    assert make_shards(["audio", str(tmp_path / "fsdd"), str(out), "--max-samples", "4"]) == 0  # 8 in 2
    mixing = {"gain_db": 6.0, "mix_ratio": 0.5} if views else None  # background clips from the block
    common = dict(shards=str(out), sample_rate=8000, clip_seconds=0.05, views=views, view_options=mixing)
    data = fsdd(root=str(tmp_path / "fsdd"), shuffle_buffer=3, **common)  # pretrain on shards, eval on root
    assert (len(data.eval_train), len(data.eval_test), data.num_classes) == (4, 4, 10)
    stats = data.stats
    assert (stats["shards"], stats["num_shards"], stats["num_train"]) == (str(out), 2, 8)
    batches = _epochs_over_two_workers(data.pretrain, batch_size=4, batches=4)  # 16 items = 2 epochs
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(indices[:8]) == sorted(indices[8:]) == list(range(8))
    if views is None:
        from mmssl.modalities.audio.mae import _clip_samples

        assert batches[0]["audio"].shape == (4, 400) and set(batches[0]["label"].tolist()) == {-1}
        assert _clip_samples(data, None) == 400  # audio_mae sizes its grid from the stream's first item
    else:
        assert len(batches[0]["views"]) == 2 and batches[0]["views"][0].shape == (4, 400)
        again = _epochs_over_two_workers(data.pretrain, batch_size=4, batches=4)  # the same draws, mixing too
        assert all(torch.equal(a["views"][1], b["views"][1]) for a, b in zip(batches, again))
    alone = audio_folder_csv(shuffle_buffer=3, **common)  # no root: no evaluation sets
    assert alone.eval_train is None and alone.stats["num_train"] == 8


def test_audio_datasets_need_root_or_shards(tmp_path):
    from mmssl.config import from_dict

    for name in ("fsdd", "audio_folder_csv"):
        with pytest.raises(ConfigError, match=f"'{name}' needs data.root .* or data.shards"):
            from_dict(_recipe("audio", "simclr", "audio_cnn", {"name": name, "views": "crops"}))
    shards_only = {"name": "fsdd", "shards": str(tmp_path), "views": "crops"}
    with pytest.raises(ConfigError, match="eval.knn score"):  # shards alone give no labelled clips
        from_dict(_recipe("audio", "simclr", "audio_cnn", shards_only, knn={}))
    # options of the clips under root are refused with shards alone (they would be ignored); with root, fine
    from mmssl.modalities.audio.esc50 import audio_folder_csv
    from mmssl.modalities.audio.fsdd import fsdd

    _fsdd_folder(tmp_path / "fsdd")
    out = tmp_path / "audio_shards"
    assert make_shards(["audio", str(tmp_path / "fsdd"), str(out), "--max-samples", "4"]) == 0
    for build, option in ((fsdd, {"test_speakers": ["jackson"]}), (audio_folder_csv, {"test_folds": [1]})):
        name = build.__name__
        with pytest.raises(ConfigError, match=rf"'{name}': data.{next(iter(option))}, data.skip_bad apply"):
            build(shards=str(out), skip_bad=True, **option)
        assert build(shards=str(out)).stats["num_train"] == 8  # defaults are not "given"
    assert audio_folder_csv(shards=str(out), test_folds=[5]).stats["num_train"] == 8  # [5] from YAML: (5,)


# ---------------------------------------------------------------------------------------------- meshes
def _two_piece_meshes(root, count: int = 6) -> None:
    """Meshes of two disjoint tetrahedra (two convex pieces: ACD labels 0 and 1, no CoACD), OBJ and PLY."""
    from mmssl.modalities.pointcloud.io import write_mesh

    tet = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    for i in range(count):
        vertices = np.concatenate([tet * (1 + i), tet + np.array([3 + i, 0, 0], np.float32)])
        write_mesh(root / f"m{i}.{'obj' if i % 2 else 'ply'}", vertices, np.concatenate([faces, faces + 4]))


def _mesh_shards(tmp_path, acd: bool = True):
    """Two-piece meshes, their ACD cache filled by a folder run, and shards (3 per shard) carrying it."""
    from mmssl.modalities.pointcloud.acd.options import MeshACDOptions
    from mmssl.modalities.pointcloud.data import mesh_folder

    src, out = tmp_path / "meshes", tmp_path / "mesh_shards"
    _two_piece_meshes(src)
    mesh_folder(root=str(src), num_points=32, cache_dir=str(tmp_path), acd=MeshACDOptions(workers=0))
    extra = ["--acd-cache", str(tmp_path / "acd")] if acd else []
    assert make_shards(["mesh", str(src), str(out), "--max-samples", "3", *extra]) == 0
    return src, out


def test_a_mesh_decodes_the_same_from_a_shard_as_from_its_file(tmp_path):
    from mmssl.modalities.pointcloud.acd.assign import assign_points
    from mmssl.modalities.pointcloud.acd.cache import ACDCache, cache_key
    from mmssl.modalities.pointcloud.acd.job import ACDJob
    from mmssl.modalities.pointcloud.acd.options import MESH_ACD_DEFAULTS
    from mmssl.modalities.pointcloud.io import normalize_unit_sphere, read_and_sample_mesh, read_mesh
    from mmssl.modalities.pointcloud.shards import decode_mesh_record, shape_rng

    src, out = _mesh_shards(tmp_path)
    manifest = read_manifest(out, modality="mesh")
    assert "acd.npz" in manifest.fields
    cache = ACDCache(tmp_path / "acd")
    for shard in manifest.shards:
        for record in iter_records(manifest.path(shard)):
            where, key = f"{manifest.path(shard)}:{record['__key__']}", record["__key__"]
            path = src / json.loads(record["json"])["path"]
            member = path.suffix[1:]
            v, f = read_mesh(path)
            v_mem, f_mem = read_mesh(f"{where}.{member}", data=record[member])  # OBJ parsed from memory
            assert torch.equal(v_mem[f_mem], v[f])  # the same triangles (vertex order may differ)
            item = decode_mesh_record(record, where, num_points=32, seed=7, with_acd=True)
            v, f, points, normals = read_and_sample_mesh(path, 32, shape_rng(7, key))
            decomposition = cache.load(
                cache_key(ACDJob("", v.numpy(), f.numpy()), MESH_ACD_DEFAULTS.params())
            )
            assert torch.equal(item["points"], torch.from_numpy(normalize_unit_sphere(points.numpy())))
            assert torch.equal(item["normals"], normals)
            assert item["acd"].tolist() == assign_points(points.numpy(), decomposition).tolist()
            assert set(item["acd"].tolist()) == {0, 1}  # the two pieces
    with pytest.raises(CorruptFileError, match=rf"mesh_shards/shard-00000\d.tar:{key}.acd.npz"):
        decode_mesh_record({**record, "acd.npz": record["acd.npz"][:-30]}, where, 32, 7, with_acd=True)
    with pytest.raises(CorruptFileError, match=rf"mesh_shards/shard-00000\d.tar:{key}.{member}"):
        decode_mesh_record({**record, member: record[member][:40]}, where, 32, 7, with_acd=False)


@pytest.mark.parametrize("acd_enabled,views", [(True, None), (False, "two_view")])
def test_mesh_folder_streams_shards_once_per_epoch_over_workers(tmp_path, acd_enabled, views):
    from mmssl.modalities.pointcloud.acd.options import MeshACDOptions
    from mmssl.modalities.pointcloud.data import mesh_folder

    _, out = _mesh_shards(tmp_path, acd=acd_enabled)
    acd = MeshACDOptions(enabled=acd_enabled)
    data = mesh_folder(shards=str(out), num_points=32, acd=acd, views=views, shuffle_buffer=2)
    assert (data.stats["shards"], data.stats["num_shards"], data.stats["num_train"]) == (str(out), 2, 6)
    batches = _epochs_over_two_workers(data.pretrain, batch_size=3, batches=4)  # 12 items = 2 epochs
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(indices[:6]) == sorted(indices[6:]) == list(range(6))
    assert batches[0]["points"].shape == batches[0]["normals"].shape == (3, 32, 3)
    labels = torch.cat([b["acd"] for b in batches])
    assert set(labels.unique().tolist()) == ({0, 1} if acd_enabled else {-1})  # Point-MAE reads no acd.npz
    if views:
        assert len(batches[0]["views"]) == 2
    from mmssl.modalities.pointcloud.render import figure_items

    drawn = figure_items(data.pretrain)  # what the ACD / Point-MAE figures show: the stream's first shapes
    assert len(drawn) == 4 and len({int(item["index"]) for item in drawn}) == 4


def test_mesh_folder_refuses_root_and_shards_and_shards_without_acd(tmp_path):
    from mmssl.config import from_dict
    from mmssl.modalities.pointcloud.acd.options import MeshACDOptions
    from mmssl.modalities.pointcloud.data import mesh_folder

    for data in ({"root": "a", "shards": "b"}, {}):
        with pytest.raises(ConfigError, match="'mesh_folder' takes data.root .* or data.shards"):
            from_dict(
                _recipe("pointcloud", "point_mae", "point_transformer", {"name": "mesh_folder", **data})
            )
    _, out = _mesh_shards(tmp_path, acd=False)
    with pytest.raises(DataError, match="need an acd.npz member .* --acd-cache"):
        mesh_folder(shards=str(out), num_points=32)  # acd.enabled by default: the ACD pretext
    with pytest.raises(ConfigError, match="data.acd.threshold=0.1"):
        mesh_folder(shards=str(out), num_points=32, acd=MeshACDOptions(threshold=0.1))


# ---------------------------------------------------------------------------------------------- point clouds
def _point_shards(tmp_path, acd: bool = True):
    """Point clouds of two boxes (with normals in PLY, without in XYZ), their ACD cache filled by a
    ``point_folder`` run, and shards (2 per shard) carrying it."""
    from mmssl.modalities.pointcloud.acd.options import PointCloudACDOptions
    from mmssl.modalities.pointcloud.data import point_folder
    from mmssl.modalities.pointcloud.io import write_points
    from tests.pointcloud.test_point_folder import two_boxes

    src, out = tmp_path / "clouds", tmp_path / "point_shards"
    src.mkdir()
    for i in range(4):
        points, normals = two_boxes(1.0 + 0.5 * i, 300, i)
        if i % 2:
            write_points(src / f"c{i}.xyz", points)
        else:
            write_points(src / f"c{i}.ply", points, normals)
    if acd:
        point_folder(
            root=str(src), num_points=32, cache_dir=str(tmp_path), acd=PointCloudACDOptions(workers=0)
        )
    extra = ["--acd-cache", str(tmp_path / "acd")] if acd else []
    assert make_shards(["points", str(src), str(out), "--max-samples", "2", *extra]) == 0
    return src, out


def test_a_point_cloud_decodes_the_same_from_a_shard_as_from_its_file(tmp_path):
    from mmssl.modalities.pointcloud.acd.assign import assign_points
    from mmssl.modalities.pointcloud.acd.cache import ACDCache, cache_key
    from mmssl.modalities.pointcloud.acd.job import ACDJob
    from mmssl.modalities.pointcloud.acd.options import POINT_CLOUD_ACD_DEFAULTS
    from mmssl.modalities.pointcloud.io import normalize_unit_sphere, read_point_file, sample_point_cloud
    from mmssl.modalities.pointcloud.shards import decode_point_record, shape_rng

    src, out = _point_shards(tmp_path)
    manifest = read_manifest(out, modality="points")
    assert "acd.npz" in manifest.fields and manifest.num_samples == 4
    cache = ACDCache(tmp_path / "acd")
    for shard in manifest.shards:
        for record in iter_records(manifest.path(shard)):
            where, key = f"{manifest.path(shard)}:{record['__key__']}", record["__key__"]
            path = src / json.loads(record["json"])["path"]
            member = path.suffix[1:]
            item = decode_point_record(record, where, num_points=32, seed=7, with_acd=True)
            xyz, normals = read_point_file(path)
            points, point_normals = sample_point_cloud(xyz, normals, 32, shape_rng(7, key))
            decomposition = cache.load(
                cache_key(ACDJob("", xyz, None, normals), POINT_CLOUD_ACD_DEFAULTS.params())
            )
            assert decomposition is not None  # make_shards found the folder run's entry by the same key
            assert torch.equal(item["points"], torch.from_numpy(normalize_unit_sphere(points)))
            assert torch.allclose(item["normals"], torch.from_numpy(point_normals))
            assert item["acd"].tolist() == assign_points(points, decomposition).tolist()
            assert len(set(item["acd"].tolist())) >= 2  # the two boxes at least
    with pytest.raises(CorruptFileError, match=rf"point_shards/shard-00000\d.tar:{key}.acd.npz"):
        decode_point_record({**record, "acd.npz": record["acd.npz"][:-30]}, where, 32, 7, with_acd=True)
    with pytest.raises(CorruptFileError, match=rf"point_shards/shard-00000\d.tar:{key}.{member}"):
        decode_point_record({**record, member: b"1 2 3\nnot a point\n"}, where, 32, 7, with_acd=False)


def test_point_folder_streams_shards_once_per_epoch_over_workers(tmp_path):
    from mmssl.modalities.pointcloud.acd.options import PointCloudACDOptions
    from mmssl.modalities.pointcloud.data import point_folder

    _, out = _point_shards(tmp_path)
    data = point_folder(shards=str(out), num_points=32, shuffle_buffer=2, acd=PointCloudACDOptions(workers=0))
    assert data.name == "point_folder" and data.stats["num_train"] == 4 and data.stats["num_shards"] == 2
    batches = _epochs_over_two_workers(data.pretrain, batch_size=2, batches=4)  # 8 items = 2 epochs
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(indices[:4]) == sorted(indices[4:]) == list(range(4))
    assert batches[0]["points"].shape == batches[0]["normals"].shape == (2, 32, 3)
    assert (torch.cat([b["acd"] for b in batches]) >= 0).all()


def test_point_folder_refuses_root_and_shards_and_shards_without_acd(tmp_path):
    from mmssl.config import from_dict
    from mmssl.modalities.pointcloud.acd.options import PointCloudACDOptions
    from mmssl.modalities.pointcloud.data import point_folder

    for data in ({"root": "a", "shards": "b"}, {}):
        with pytest.raises(ConfigError, match="'point_folder' takes data.root .* or data.shards"):
            from_dict(
                _recipe("pointcloud", "point_mae", "point_transformer", {"name": "point_folder", **data})
            )
    _, out = _point_shards(tmp_path, acd=False)
    with pytest.raises(DataError, match="need an acd.npz member .*make_shards.py points .* point_folder run"):
        point_folder(shards=str(out), num_points=32)
    with pytest.raises(ConfigError, match="data.acd.threshold=0.05: point-cloud shards"):
        point_folder(shards=str(out), num_points=32, acd=PointCloudACDOptions(threshold=0.05))
    streamed = point_folder(shards=str(out), num_points=32, acd=PointCloudACDOptions(enabled=False))
    assert (next(iter(streamed.pretrain))["acd"] == -1).all()  # Point-MAE reads no acd.npz


# ---------------------------------------------------------------------------------------------- text
def _text_shards(tmp_path):
    src, out = tmp_path / "texts", tmp_path / "text_shards"
    _source("text", src)
    (src / "cat" / "cat0.txt").write_text("First paragraph of cat0.\n\nA second one, about a mat.\n")
    (src / "lines.jsonl").write_text('{"text": "a line about a dog"}\n{"text": "  another line  "}\n')
    assert make_shards(["text", str(src), str(out), "--max-samples", "4"]) == 0  # 8 records in 2 shards
    return src, out


def test_a_text_record_decodes_to_the_tokens_of_its_file_in_the_folder_corpus(tmp_path):
    from mmssl.modalities.text.corpus import read_jsonl, read_plain_file
    from mmssl.modalities.text.packing import token_stream
    from mmssl.modalities.text.shards import decode_text_record, paragraph_run
    from mmssl.modalities.text.tokenizer import TokenizerSpec, encode_texts, train_tokenizer

    src, out = _text_shards(tmp_path)
    manifest = read_manifest(out, modality="text")
    records = [(shard, r) for shard in manifest.shards for r in iter_records(manifest.path(shard))]
    tok = train_tokenizer([r["txt"].decode() for _, r in records], TokenizerSpec(vocab_size=200))
    lines = [u.text for u in read_jsonl(src / "lines.jsonl")]
    for shard, record in records:
        meta = json.loads(record["json"])
        texts = (
            [lines[meta["line"] - 1]]
            if "line" in meta
            else [u.text for u in read_plain_file(src / meta["path"])]
        )
        where = f"{manifest.path(shard)}:{record['__key__']}"
        assert (
            decode_text_record(record, where, tok, sep_id=3).tolist()
            == token_stream(encode_texts(tok, texts), 3).tolist()
        )
    # a long record is cut to whole consecutive paragraphs from a random first one (any of them: the run
    # is shorter only when it starts at the last paragraph)
    units = [f"{i}p" for i in range(10)]
    for seed in range(20):
        torch.manual_seed(seed)
        run = paragraph_run(units, max_chars=5)
        start = units.index(run[0])
        assert run == units[start : start + 2]
    with pytest.raises(CorruptFileError, match=r"text_shards/shard-00000\d.tar:\d+ \(UnicodeDecodeError"):
        decode_text_record({**record, "txt": b"\xff\xfe"}, where, tok, sep_id=3)


def test_text_corpus_streams_shards_once_per_epoch_over_workers(tmp_path):
    from mmssl.modalities.text.data import text_corpus
    from mmssl.modalities.text.shards import decode_text_record

    src, out = _text_shards(tmp_path)
    data = text_corpus(root=str(src), shards=str(out), cache_dir=str(tmp_path), block_size=48, vocab_size=200)
    assert (data.stats["shards"], data.stats["num_shards"], data.stats["num_train"]) == (str(out), 2, 8)
    assert data.stats["tokenizer_records"] == 10_000  # all 8 records: the shards' text, not root's
    tok = data.extras[0].tokenizer
    manifest = read_manifest(out)
    documents = []  # every record fits a block: an epoch gives each one once, whole, as [CLS] doc [SEP]
    for shard in manifest.shards:
        for record in iter_records(manifest.path(shard)):
            ids = [tok.cls_token_id, *decode_text_record(record, "", tok, tok.sep_token_id).tolist()]
            documents.append(ids + [tok.pad_token_id] * (48 - len(ids)))
    batches = _epochs_over_two_workers(data.pretrain, batch_size=4, batches=4)  # 16 items = 2 epochs
    blocks = torch.cat([b["input_ids"] for b in batches]).tolist()
    assert sorted(blocks[:8]) == sorted(blocks[8:]) == sorted(documents)
    mask = torch.cat([b["attention_mask"] for b in batches])
    assert torch.equal(mask.bool(), torch.cat([b["input_ids"] for b in batches]) != tok.pad_token_id)


def test_text_corpus_refuses_tokenizer_records_that_cannot_apply(tmp_path):
    from mmssl.config import from_dict
    from mmssl.modalities.text.data import text_corpus

    for data, match in (
        ({"tokenizer_records": 5}, "applies to data.shards only"),
        ({"shards": "s", "tokenizer": "t", "tokenizer_records": 5}, "not both"),
    ):
        with pytest.raises(ConfigError, match=match):
            from_dict(_recipe("text", "mlm", "bert_small", {"name": "text_corpus", **data}))
    src, out = _text_shards(tmp_path)
    with pytest.raises(DataError, match="tokenizer_records must be >= 1"):
        text_corpus(root=str(src), shards=str(out), cache_dir=str(tmp_path), tokenizer_records=0)
