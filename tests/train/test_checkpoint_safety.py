"""Checkpoints survive damage: the previous one is kept until the new one is complete, an unreadable
``last.pt`` is named and ``resume=auto`` falls back to ``previous.pt``, and a full disk stops the run with
a clear error and both checkpoints intact."""

from __future__ import annotations

import errno

import pytest
import torch

import mmssl.train.checkpoint as checkpoint_module
from mmssl.train.checkpoint import PREVIOUS_NAME, CheckpointWriteError, load_checkpoint
from mmssl.train.trainer import Trainer
from tests.train.test_trainer import NoisyPairs, TinyMethod, _cfg


def test_previous_checkpoint_is_kept(tmp_path):
    Trainer(_cfg(steps=6, ckpt_every=2), TinyMethod(), NoisyPairs(), run_dir=tmp_path).fit()
    folder = tmp_path / "checkpoints"
    assert load_checkpoint(folder / "last.pt")["step"] == 6
    assert load_checkpoint(folder / PREVIOUS_NAME)["step"] == 4
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", PREVIOUS_NAME]  # no temporary file


def test_truncated_last_checkpoint_falls_back_to_previous(tmp_path, capsys):
    straight = TinyMethod()
    Trainer(_cfg(steps=6), straight, NoisyPairs()).fit()

    class Killed(Exception):
        pass

    def die_during_step_5(step, total):
        if step == 5:
            raise Killed

    part = TinyMethod()
    part.on_train_step_end = die_during_step_5
    with pytest.raises(Killed):
        Trainer(_cfg(steps=6), part, NoisyPairs(), run_dir=tmp_path).fit()
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut in half

    with pytest.raises(ValueError, match=f"cannot read checkpoint {last}"):  # named, never used
        Trainer(_cfg(steps=6), TinyMethod(), NoisyPairs(), run_dir=tmp_path, resume=str(last)).fit()
    resumed = TinyMethod()
    Trainer(_cfg(steps=6), resumed, NoisyPairs(), run_dir=tmp_path, resume="auto").fit()
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {last}" in err and f"resuming from {last.parent / PREVIOUS_NAME}" in err
    # previous.pt is the step-2 checkpoint: the run redoes steps 3-6 and ends where the straight run ends.
    assert torch.equal(resumed.encoder.weight, straight.encoder.weight)


def test_full_disk_stops_with_both_checkpoints_intact(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third checkpoint (step 6) finds the disk full half-way
            f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_fill_the_disk)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*unchanged"):
        Trainer(_cfg(steps=6, ckpt_every=2), TinyMethod(), NoisyPairs(), run_dir=tmp_path).fit()
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    folder = tmp_path / "checkpoints"
    assert load_checkpoint(folder / "last.pt")["step"] == 4
    assert load_checkpoint(folder / PREVIOUS_NAME)["step"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", PREVIOUS_NAME]
