"""Direct tests of ``atomic_save`` (a file appears complete or not at all) and ``retrain_baselines``
(the recipes of baselines that retrain the recipe with overrides)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from mmssl.config import load_recipe, retrain_baselines
from mmssl.errors import ConfigError
from mmssl.train import checkpoint
from mmssl.train.checkpoint import atomic_save

REPO = Path(__file__).resolve().parents[2]
FIXMATCH = REPO / "recipes" / "semi" / "fixmatch.yaml"

# ------------------------------------------------------------------------------------ atomic_save


def _state(value: float) -> dict[str, Any]:
    return {"step": int(value), "w": torch.full((64, 64), value), "note": f"v{value}"}


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys() and a["step"] == b["step"] and a["note"] == b["note"]
    assert torch.equal(a["w"], b["w"])


def _failing_save(exc: BaseException, calls: list[int]):
    """A ``torch.save`` that writes the first half of a real serialisation, then raises ``exc``."""
    real_save = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        import io

        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        calls.append(len(data) // 2)
        raise exc

    return save


def test_atomic_save_round_trips_and_leaves_only_the_target(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "last.pt"  # parent folders are created
    atomic_save(_state(1.0), path)
    _assert_same(torch.load(path, weights_only=True), _state(1.0))
    atomic_save(_state(2.0), path)  # replaces the previous file
    _assert_same(torch.load(path, weights_only=True), _state(2.0))
    assert sorted(os.listdir(path.parent)) == ["last.pt"]


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_write_keeps_the_previous_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    path = tmp_path / "last.pt"
    atomic_save(_state(1.0), path)
    before = path.read_bytes()
    calls: list[int] = []
    monkeypatch.setattr(torch, "save", _failing_save(exc, calls))
    with pytest.raises(type(exc)):
        atomic_save(_state(2.0), path)
    assert calls and calls[0] > 0  # partial bytes really were written somewhere
    monkeypatch.undo()
    assert path.read_bytes() == before  # byte-identical: never opened for writing
    _assert_same(torch.load(path, weights_only=True), _state(1.0))
    assert os.listdir(tmp_path) == ["last.pt"]  # the partial temporary file is gone


def test_a_failed_first_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "save", _failing_save(RuntimeError("boom"), []))
    with pytest.raises(RuntimeError, match="boom"):
        atomic_save(_state(1.0), tmp_path / "encoder.pt")
    assert os.listdir(tmp_path) == []


def test_a_failed_rename_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    atomic_save(_state(1.0), path)

    def refuse(src: Any, dst: Any) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(checkpoint.os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        atomic_save(_state(2.0), path)
    monkeypatch.undo()
    _assert_same(torch.load(path, weights_only=True), _state(1.0))
    assert os.listdir(tmp_path) == ["last.pt"]


def test_the_data_is_on_disk_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync of the complete temporary file happens before it replaces the target, in that order."""
    path = tmp_path / "last.pt"
    atomic_save(_state(1.0), path)
    old = path.read_bytes()
    events: list[tuple[str, Any]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        # At rename time the target is still the old file and the source is a complete checkpoint.
        events.append(("replace", Path(dst).read_bytes() == old))
        _assert_same(torch.load(src, weights_only=True), _state(2.0))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    atomic_save(_state(2.0), path)
    assert [e[0] for e in events] == ["fsync", "replace"]
    assert events[0][1] == path.stat().st_size  # the whole file was synced, not a prefix
    assert events[1][1] is True


# ------------------------------------------------------------------------------ retrain_baselines


def test_retrain_baselines_builds_one_validated_recipe_per_override_mapping() -> None:
    cfg = load_recipe(
        FIXMATCH,
        [
            "resume=auto",
            "ckpt=/somewhere/last.pt",
            "eval.baselines=[random_init, {sup: [method.unlabelled_weight=0, data.mu=1]}, "
            "{tau: [method.threshold=0.5]}]",
        ],
    )
    before = cfg.to_dict()
    out = retrain_baselines(cfg)
    assert list(out) == ["sup", "tau"]  # random_init is evaluated, not retrained
    sup, tau = out["sup"], out["tau"]
    # The overrides are applied (and coerced) on top of the recipe; everything else is the recipe's.
    assert sup.method["unlabelled_weight"] == 0 and sup.data["mu"] == 1
    assert tau.method["threshold"] == 0.5
    assert tau.method["unlabelled_weight"] == cfg.method["unlabelled_weight"]
    for b in (sup, tau):
        assert b.train == cfg.train and b.encoder == cfg.encoder and b.name == cfg.name
        # A retrained baseline starts fresh and has no baselines of its own (no recursion) ...
        assert b.resume is None and b.ckpt is None and "baselines" not in b.eval
        # ... but is evaluated with the recipe's other evaluators.
        assert b.eval == {k: v for k, v in cfg.eval.items() if k != "baselines"}
    assert cfg.to_dict() == before  # the recipe itself is untouched


def test_retrain_baselines_is_empty_without_override_mappings() -> None:
    assert retrain_baselines(load_recipe(FIXMATCH, ["eval.baselines=[random_init]"])) == {}
    assert retrain_baselines(load_recipe(FIXMATCH, ["eval.baselines=[]"])) == {}


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.thresold=0.5", r"baseline 'broken': unknown key 'method.thresold'.*mean 'threshold'"),
        ("method.threshold=abc", r"baseline 'broken': 'method.threshold' expects float, got 'abc'"),
        # The train-section checks name the key but not the baseline (from_dict does not prefix its
        # source there); the key is what is asserted.
        ("train.optimizer=adam", r"'train.optimizer' must be one of .*got 'adam' \(did you mean 'adamw'"),
    ],
)
def test_retrain_baselines_names_the_baseline_and_the_bad_key(override: str, message: str) -> None:
    """The recipe loads (overrides are only checked for shape), the baseline's recipe is validated."""
    cfg = load_recipe(FIXMATCH, [f"eval.baselines=[{{broken: [{override}]}}]"])
    with pytest.raises(ConfigError, match=message):
        retrain_baselines(cfg)
