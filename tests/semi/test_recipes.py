"""The semi-supervised recipes: every one validates; FixMatch and self-training run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmssl.cli import main
from mmssl.config import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "semi"
NAMES = ["fixmatch", "mean_teacher", "entropy_min", "self_training", "data_distillation"]
TINY = [
    "data.train_per_class=8",
    "data.labels_per_class=2",
    "data.test_per_class=2",
    "data.mu=2",
    "train.batch_size=4",
    "train.progress=false",
    "train.log_every=1",
    "method.pool_batch_size=32",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("name", NAMES)
def test_recipe_validates_with_one_consistent_unlabelled_weight(name):
    cfg = load_recipe(RECIPES / f"{name}.yaml")
    assert cfg.data["name"] == "semi_shapes" and cfg.encoder["name"] == "small_cnn"
    assert "unlabelled_weight" in cfg.method and "classifier_accuracy" in cfg.eval
    (baseline,) = cfg.eval["baselines"]
    assert "method.unlabelled_weight=0" in baseline["supervised_only"]


@pytest.mark.parametrize("name", ["fixmatch", "self_training"])
def test_recipe_runs_two_steps_with_the_supervised_only_baseline(name, tmp_path):
    out = tmp_path / name
    assert main(["run", str(RECIPES / f"{name}.yaml"), *TINY, "train.steps=2", f"out_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == name and metrics["steps"] == 2
    for section in (metrics["eval"], metrics["baselines"]["supervised_only"]):
        assert 0.0 <= section["classifier_top1"] <= 1.0
        assert section["pool_size"] == 10 * (8 - 2)
    if name == "self_training":  # the guard scored the pool at the first boundary (step 1 of 2)
        assert metrics["eval"]["pool_ood"] == 12
        assert 0 <= metrics["eval"]["ood_dropped_true_ood"] <= metrics["eval"]["ood_dropped"]
        assert 0 <= metrics["eval"]["pseudo_labelled_ood"] <= metrics["eval"]["pool_ood"]
        assert "ood_dropped" not in metrics["baselines"]["supervised_only"]
    assert (out / "baselines" / "supervised_only" / "metrics.jsonl").exists()
