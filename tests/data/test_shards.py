"""WebDataset shards: writing from every modality's folders, reading back, the rank/worker split, and exact
resume of the stream (by itself and through the trainer)."""

from __future__ import annotations

import io
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
