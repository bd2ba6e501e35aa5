"""The ambient-sound recipe validates and runs end to end at toy size (own cache under tmp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmssl.cli import main
from mmssl.config import load_recipe

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "audio" / "ambient_clusters.yaml"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_recipe_validates() -> None:
    cfg = load_recipe(RECIPE)
    assert cfg.method["name"] == "ambient_sound" and cfg.data["name"] == "procedural_audio_visual"
    assert cfg.encoder["name"] == "small_cnn" and "random_init" in cfg.eval["baselines"]


def test_recipe_runs_end_to_end_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [
        "data.train_per_class=2",
        "data.test_per_class=1",
        "data.num_scenes=3",
        "data.duration_s=1.0",
        "data.clip_seconds=1.0",
        "data.image_size=16",
        "method.num_clusters=3",
        "train.steps=2",
        "train.batch_size=4",
        "train.num_workers=0",
        "train.progress=false",
        "eval={baselines: [random_init], ambient_targets: {}, knn: {k: 2}}",
        f"out_dir={out}",
    ]
    assert main(["run", str(RECIPE), *overrides]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ambient_sound" and metrics["steps"] == 2
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert 0.0 <= section["knn_top1"] <= 1.0 and 0.0 <= section["target_nmi"] <= 1.0
    assert (out / "figures" / "ambient_targets.png").is_file() and (out / "encoder.pt").is_file()
