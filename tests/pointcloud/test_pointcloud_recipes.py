"""The point-cloud recipes: their documented real-shape commands load, and each recipe runs end to end on a
tiny budget (slow)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from mmssl.config import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "pointcloud"
REAL = REPO / ".." / "shared" / "data" / "3d" / "shapenetpart_points"
NEW = ("simclr", "byol", "point_mae")


def header_command(name: str, verb: str, contains: str = "data.eval_on=") -> list[str]:
    """The ``mmssl <verb> pointcloud/<name> ...`` command (holding ``contains``) in the recipe's header
    comment, as argv."""
    for line in (RECIPES / f"{name}.yaml").read_text().splitlines():
        found = re.search(rf"mmssl {verb} pointcloud/{name}\b.*", line)
        if line.startswith("#") and found and contains in line:
            return shlex.split(found.group(0))[1:]
    raise AssertionError(f"recipes/pointcloud/{name}.yaml documents no 'mmssl {verb}' command")


@pytest.mark.parametrize("name", [*NEW, "acd_10shot"])
def test_real_shape_command_in_header_loads(name: str) -> None:
    argv = header_command(name, "run")
    assert argv[:2] == ["run", f"pointcloud/{name}"]
    cfg = load_recipe(RECIPES / f"{name}.yaml", argv[2:])
    eval_on = cfg.data["eval_on"]
    assert Path(eval_on["root"]).name == "shapenetpart_points" and eval_on["num_points"] <= 236
    assert len(eval_on["categories"]) == 8 and "score_split" not in eval_on  # default: test
    assert cfg.eval["baselines"] == ["random_init"] and cfg.eval["part_segmentation"]["shots"] == [10]


def test_moco_command_in_simclr_header_loads() -> None:
    argv = header_command("simclr", "run", contains="method=")
    cfg = load_recipe(RECIPES / "simclr.yaml", argv[2:])
    assert cfg.method["name"] == "moco" and cfg.data["views"] == "two_view"


@pytest.mark.parametrize("name", NEW)
def test_recipe_sections(name: str) -> None:
    cfg = load_recipe(RECIPES / f"{name}.yaml")
    assert cfg.data["name"] == "procedural_parts" and cfg.train.num_threads == 1
    assert cfg.method["name"] == name
    if name != "point_mae":
        assert cfg.data["views"] == "two_view" and cfg.encoder["name"] == "dgcnn"
    else:
        assert cfg.encoder["name"] == "point_transformer" and cfg.method["mask_ratio"] == 0.6


TINY = [
    "data.num_points=64",
    "data.train_per_category=10",
    "data.test_per_category=2",
    "train.steps=2",
    "train.batch_size=8",
    "train.progress=false",
    "eval.part_segmentation.steps=2",
    "eval.part_segmentation.seeds=1",
    "eval.part_segmentation.linear_epochs=1",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_recipe_runs_on_a_tiny_budget(name: str, tmp_path, monkeypatch) -> None:
    from mmssl.cli import main

    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))
    assert main(["run", str(RECIPES / f"{name}.yaml"), *TINY, f"out_dir={tmp_path / 'run'}"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for column in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert {"fewshot10_ft_class_miou", "fewshot10_linear_instance_miou"} <= set(column)
    assert metrics["final_loss"] is not None and metrics["data"]["num_train"] == 50


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason=f"shapenetpart_points not found: {REAL}")
def test_trained_encoder_evaluated_on_real_shapes(tmp_path, monkeypatch) -> None:
    """``mmssl run`` then the header's ``mmssl eval ... ckpt=`` on the real shapes, on a tiny budget."""
    from mmssl.cli import main

    monkeypatch.chdir(REPO)  # the documented root is relative to the repository
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(["run", str(RECIPES / "point_mae.yaml"), *TINY, f"out_dir={run_dir}"]) == 0
    eval_on = header_command("point_mae", "run")[2]
    assert eval_on.startswith("data.eval_on=")
    argv = ["eval", str(RECIPES / "point_mae.yaml"), eval_on, *TINY, f"ckpt={run_dir / 'encoder.pt'}"]
    assert main([*argv, f"out_dir={tmp_path / 'real'}"]) == 0
    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert metrics["data"]["num_support"] == 80 and metrics["data"]["num_scored"] == 24
    assert metrics["data"]["score_split"] == "test"
    assert {"fewshot10_ft_class_miou"} <= set(metrics["eval"]) & set(metrics["baselines"]["random_init"])
