"""The optional Weights & Biases logger (recipe ``log.wandb``): offline runs and the missing extra."""

from __future__ import annotations

import json
import struct
import sys

import pytest

from mmssl.config import from_dict
from mmssl.errors import ConfigError
from mmssl.train.run_logger import LogOptions, WandbOptions
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


def _history(run_file) -> dict[int, dict[str, float]]:
    """``{step: {key: value}}`` from an offline run's ``run-*.wandb`` (a LevelDB-style log of protobuf
    records: a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks with crc32, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, rows = 7, b"", {}
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
            if record.WhichOneof("record_type") == "history":
                row = rows.setdefault(record.history.step.num, {})
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        row[key] = json.loads(item.value_json)
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
