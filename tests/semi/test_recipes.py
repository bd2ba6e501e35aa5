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


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# At two steps nothing is confident: these overrides make every unlabelled sample count, so that the
# run exercises the unlabelled loss (FixMatch: every pseudo-label passes tau = 0; self-training: every
# pool sample the guard keeps is pseudo-labelled with weight 1).
USE_EVERY_UNLABELLED = {"fixmatch": "method.threshold=0", "self_training": "method.selection=all"}


@pytest.mark.parametrize("name", ["fixmatch", "self_training"])
def test_recipe_runs_two_steps_with_the_supervised_only_baseline(name, tmp_path):
    out = tmp_path / name
    args = [*TINY, USE_EVERY_UNLABELLED[name], "train.steps=2", f"out_dir={out}"]
    assert main(["run", str(RECIPES / f"{name}.yaml"), *args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == name and metrics["steps"] == 2
    n_test = 10 * 2  # 10 classes x data.test_per_class
    for section in (metrics["eval"], metrics["baselines"]["supervised_only"]):
        correct = section["classifier_top1"] * n_test  # a whole number of the 20 test images
        assert correct == pytest.approx(round(correct))
        assert section["pool_size"] == 10 * (8 - 2)
    # The trained run's loss is CE(labelled) + lambda_u * unlabelled loss, and the unlabelled part is
    # really used once it is on (FixMatch: from step 1; self-training: after the first round boundary,
    # step 1 of 2).
    lambda_u = load_recipe(RECIPES / f"{name}.yaml").method["unlabelled_weight"]
    assert lambda_u > 0
    history = _history(out / "metrics.jsonl")
    assert [h["step"] for h in history] == [1, 2]
    semi_steps = history if name == "fixmatch" else history[1:]
    for h in semi_steps:
        assert h["loss"] == pytest.approx(h["loss_x"] + lambda_u * h["loss_u"], rel=1e-6)
        assert h["loss_u"] > 0.1  # a cross-entropy over 10 classes of an untrained model, not ~0
    if name == "fixmatch":
        assert all(h["mask_rate"] == 1.0 for h in history)  # tau = 0: every pseudo-label is kept
    else:
        assert history[0]["loss"] == history[0]["loss_x"]  # phase 0: the teacher, labelled data only
        assert history[1]["used_fraction"] > 0
    # The baseline retrained with unlabelled_weight=0: labelled cross-entropy alone at every step.
    baseline_history = _history(out / "baselines" / "supervised_only" / "metrics.jsonl")
    assert [h["step"] for h in baseline_history] == [1, 2]
    for h in baseline_history:
        assert h["loss"] == h["loss_x"] and h.get("loss_u", 0.0) == 0.0
    if name == "self_training":  # the guard scored the pool at the first boundary (step 1 of 2)
        ev = metrics["eval"]
        assert ev["pool_ood"] == 12
        assert 0 <= ev["ood_dropped_true_ood"] <= ev["ood_dropped"]
        # selection=all: every sample the guard kept is pseudo-labelled, the out-of-domain ones included.
        assert ev["pseudo_labelled"] == ev["pool_size"] - ev["ood_dropped"]
        assert ev["pseudo_labelled_ood"] == ev["pool_ood"] - ev["ood_dropped_true_ood"]
        assert "ood_dropped" not in metrics["baselines"]["supervised_only"]
