"""The optional Weights & Biases logger (recipe ``log.wandb``): offline runs, the run's figures in W&B and
TensorBoard, resume=auto continuing the same W&B run, and the missing extra."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from mmssl.config import from_dict
from mmssl.core.method import Method
from mmssl.errors import ConfigError
from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.run_logger import WANDB_RUN_ID_FILE, LogOptions, WandbOptions
from mmssl.train.trainer import Trainer
from tests.data.test_contract import RECIPE
from tests.train.test_trainer import NoisyPairs, TinyMethod, _cfg


class EveryOther:
    """A step monitor, so one step gets values from two ``log`` calls (monitor, then losses)."""

    every = 2

    def __call__(self, method):
        return {"probe": 0.5}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return wandb_dir


def _records(run_file: Path) -> list:
    """The protobuf records of an offline run's ``run-*.wandb`` (a LevelDB-style log: a 7-byte ``:W&B``
    header, then 32 KiB blocks of chunks with crc32, length, type), once W&B has written its ``exit`` record
    (waited for: the wandb-core process writes the file after ``finish()`` has asked it to)."""
    from wandb.proto import wandb_internal_pb2 as pb

    for _ in range(100):
        data = run_file.read_bytes()
        assert data[:4] == b":W&B"
        pos, pending, records = 7, b"", []
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if left < 7 or (length == 0 and kind == 0):  # block padding
                pos += left
                continue
            pending += data[pos + 7 : pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # FULL or LAST chunk: a whole record
                record = pb.Record()
                record.ParseFromString(pending)
                pending = b""
                records.append(record)
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        time.sleep(0.1)
    raise AssertionError(f"{run_file} has no exit record")


def _history(run_file: Path) -> dict[int, dict[str, object]]:
    """``{step: {key: value}}`` from an offline run's history records. An image's value is the dict of its
    fields (``{"_type": "image-file", "path": ..., "width": ...}``)."""
    rows: dict[int, dict[str, object]] = {}
    for record in _records(run_file):
        if record.WhichOneof("record_type") != "history":
            continue
        row = rows.setdefault(record.history.step.num, {})
        for item in record.history.item:
            # An image is written as one item per field: nested_key [key, "_type"], [key, "path"] ...
            path = [item.key] if item.key else list(item.nested_key)
            if path[0].startswith("_"):
                continue
            target = row
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = json.loads(item.value_json)
    return rows


def test_offline_run_logs_the_same_steps_as_metrics_jsonl(tmp_path, offline_wandb):
    run_dir = tmp_path / "run"
    options = LogOptions(wandb=WandbOptions(project="mmssl-test", mode="offline", name="tiny"))
    result = Trainer(
        _cfg(steps=4),
        TinyMethod(),
        NoisyPairs(),
        run_dir=run_dir,
        extra_state={"config": {"name": "tiny"}},
        monitors=[EveryOther()],
        log_options=options,
    ).fit()
    assert result.steps == 4

    runs = list((offline_wandb / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    (run_file,) = runs[0].glob("run-*.wandb")
    logged = _history(run_file)

    expected: dict[int, dict[str, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        expected.setdefault(row.pop("step"), {}).update({f"train/{k}": v for k, v in row.items()})
    assert sorted(logged) == sorted(expected) == [1, 2, 3, 4]
    for step, values in expected.items():
        assert logged[step].keys() == values.keys()
        for key, value in values.items():
            assert logged[step][key] == pytest.approx(value)
    assert "train/probe" in logged[2] and "train/loss" in logged[2]


def _offline_runs(wandb_dir: Path) -> list[Path]:
    return sorted((wandb_dir / "wandb").glob("offline-run-*"))


def test_every_png_of_a_run_goes_to_wandb_and_tensorboard(tmp_path, offline_wandb, monkeypatch):
    """``mmssl run``: the loss curve and a method's figure (written here with PIL, not through
    ``save_figure``) reach W&B as images and TensorBoard as image summaries, keyed ``figures/<stem>``; a PNG
    left in figures/ by an earlier run is not logged again."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmssl import pipeline

    def draw(self, folder, data, device):
        Image.new("RGB", (12, 10), (200, 30, 30)).save(Path(folder) / "views.png")

    monkeypatch.setattr(Method, "save_figures", draw)
    run_dir = tmp_path / "run"
    (run_dir / "figures").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(run_dir / "figures" / "stale.png")
    cfg = from_dict(
        {
            **RECIPE,
            "data": {**RECIPE["data"], "train_per_class": 4, "test_per_class": 2, "image_size": 16},
            "train": {"steps": 2, "batch_size": 8, "num_workers": 0, "log_every": 1, "progress": False},
            "eval": {},
            "out_dir": str(run_dir),
            "log": {"wandb": {"project": "mmssl-test", "mode": "offline"}},
        }
    )
    pipeline.run(cfg)

    (run,) = _offline_runs(offline_wandb)
    (run_file,) = run.glob("run-*.wandb")
    logged = _history(run_file)
    images = {k: v for row in logged.values() for k, v in row.items() if not k.startswith("train/")}
    assert sorted(images) == ["figures/loss_curve", "figures/views"]
    assert all(v["_type"] == "image-file" for v in images.values())
    assert {"figures/loss_curve", "figures/views"} <= set(logged[2])  # with the last step's losses
    assert images["figures/views"]["width"] == 12 and images["figures/views"]["height"] == 10
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) == 2

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["figures/loss_curve", "figures/views"]
    (views,) = events.Images("figures/views")
    assert (views.step, views.width, views.height) == (2, 12, 10)


def test_resume_continues_the_same_wandb_run(tmp_path, offline_wandb, monkeypatch, capsys):
    """Preempted after logging step 5 with the last checkpoint at step 4, then resume=auto: one W&B run id
    across both attempts, and its history holds every step once (step 5 from the first attempt, which W&B
    already had; steps 6-8 from the second)."""

    class Killed(Exception):
        pass

    def die_at_step_6(step, total):  # after step 4's checkpoint and step 5's log line
        if step == 6:
            raise Killed

    run_dir = tmp_path / "run"
    options = LogOptions(wandb=WandbOptions(project="mmssl-test", mode="offline"))
    cfg = _cfg(steps=8, ckpt_every=4)
    first = TinyMethod()
    first.on_train_step_end = die_at_step_6
    with pytest.raises(Killed):
        Trainer(cfg, first, NoisyPairs(), run_dir=run_dir, log_options=options).fit()
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 4
    run_id = (run_dir / WANDB_RUN_ID_FILE).read_text().strip()

    # An offline run's folder is named to the second: the resumed attempt writes under another WANDB_DIR so
    # that a fast test cannot land both attempts in one folder.
    second_dir = tmp_path / "wandb_dir_2"
    monkeypatch.setenv("WANDB_DIR", str(second_dir))
    Trainer(cfg, TinyMethod(), NoisyPairs(), run_dir=run_dir, resume="auto", log_options=options).fit()
    assert f"W&B run {run_id} continues" in capsys.readouterr().out

    (before,) = _offline_runs(offline_wandb)
    (after,) = _offline_runs(second_dir)
    assert before.name.endswith(f"-{run_id}") and after.name.endswith(f"-{run_id}")
    assert (run_dir / WANDB_RUN_ID_FILE).read_text().strip() == run_id
    first_rows = _history(next(before.glob(f"run-{run_id}.wandb")))
    second_rows = _history(next(after.glob(f"run-{run_id}.wandb")))
    assert sorted(first_rows) == [1, 2, 3, 4, 5] and sorted(second_rows) == [6, 7, 8]

    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 5, 6, 7, 8]  # step 5 trained twice
    for row in lines[:5]:
        assert first_rows[row["step"]]["train/loss"] == pytest.approx(row["loss"])
    for row in lines[6:]:
        assert second_rows[row["step"]]["train/loss"] == pytest.approx(row["loss"])


def test_a_fresh_start_begins_a_new_wandb_run(tmp_path, offline_wandb):
    options = LogOptions(wandb=WandbOptions(project="mmssl-test", mode="offline"))
    run_dir = tmp_path / "run"
    Trainer(_cfg(steps=2), TinyMethod(), NoisyPairs(), run_dir=run_dir, log_options=options).fit()
    first = (run_dir / WANDB_RUN_ID_FILE).read_text().strip()
    Trainer(_cfg(steps=2), TinyMethod(), NoisyPairs(), run_dir=run_dir, log_options=options).fit()
    assert (run_dir / WANDB_RUN_ID_FILE).read_text().strip() != first


def test_disabled_mode_writes_no_wandb_run(tmp_path, offline_wandb):
    options = LogOptions(wandb=WandbOptions(project="p", mode="disabled"))
    Trainer(_cfg(steps=2), TinyMethod(), NoisyPairs(), run_dir=tmp_path / "run", log_options=options).fit()
    assert not list(offline_wandb.glob("wandb/offline-run-*"))
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_missing_extra_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    options = LogOptions(wandb=WandbOptions(project="p"))
    trainer = Trainer(_cfg(steps=2), TinyMethod(), NoisyPairs(), run_dir=tmp_path, log_options=options)
    with pytest.raises(ConfigError, match=r"log\.wandb.*pip install mmssl\[wandb\]"):
        trainer.fit()


def test_recipe_log_section():
    assert from_dict(dict(RECIPE)).log == LogOptions()
    cfg = from_dict({**RECIPE, "log": {"wandb": {"project": "p", "mode": "online", "entity": "me"}}})
    assert cfg.log.wandb == WandbOptions(project="p", mode="online", entity="me")
    assert from_dict(cfg.to_dict()).log == cfg.log  # config.yaml round trip
    with pytest.raises(ConfigError, match=r"log\.wandb\.mode.*offline, online, disabled"):
        from_dict({**RECIPE, "log": {"wandb": {"project": "p", "mode": "offlien"}}})
    with pytest.raises(ConfigError, match=r"unknown key 'log\.wandb\.projct'"):
        from_dict({**RECIPE, "log": {"wandb": {"projct": "p"}}})
    with pytest.raises(ConfigError, match=r"unknown key 'log\.tensorbord'"):
        from_dict({**RECIPE, "log": {"tensorbord": True}})
