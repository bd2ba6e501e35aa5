"""The video SimCLR / BYOL (two clips) and VideoMAE recipes: they load, and a few steps of each train with a
finite loss and evaluate end to end at toy size (own cache under tmp)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmssl.cli import main
from mmssl.config import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "video"
NAMES = ("simclr", "byol", "videomae")
TOY = [
    "data.num_videos=8",
    "data.num_heldout=4",
    "data.num_frames=10",
    "data.num_propagation_sequences=1",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
    "train.warmup_steps=0",
    "eval={baselines: [random_init], label_propagation: {n_context: 2, max_frames: 4}, knn: {k: 2}}",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("name", NAMES)
def test_recipe_loads_with_random_init_baseline_and_label_propagation(name):
    cfg = load_recipe(RECIPES / f"{name}.yaml")
    assert cfg.modality == "video" and cfg.method["name"] == name
    assert cfg.eval["baselines"] == ["random_init"] and "label_propagation" in cfg.eval
    text = (RECIPES / f"{name}.yaml").read_text()
    assert "eval.label_propagation.root=../shared/data/video/DAVIS" in text  # the DAVIS command
    if name != "videomae":
        assert cfg.data["views"] == "two_clips" and cfg.encoder["name"] == "video_cnn"
    else:
        assert cfg.method["mask_ratio"] == 0.9 and cfg.encoder["name"] == "video_vit"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_recipe_trains_a_few_steps_and_evaluates(name, tmp_path):
    out = tmp_path / name
    assert main(["run", str(RECIPES / f"{name}.yaml"), *TOY, "train.steps=3", f"out_dir={out}"]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    metrics = json.loads((out / "metrics.json").read_text())
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert 0.0 <= section["jf_mean"] <= 1.0  # fractions (the report prints percent)
        assert 0.0 <= section["knn_top1"] <= 1.0
    if name == "videomae":
        assert (out / "figures" / "videomae_reconstructions.png").is_file()
