"""recipes/image/cifar10: every CPU and GPU profile loads (schema, option and contract checks) without data.

Loading a recipe does not open the data folder (checked below with a missing one), so these tests need no
CIFAR-10 images and never skip; nothing is trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmssl.config import load_recipe
from mmssl.modalities.image.methods.context import sample_context_pairs
from mmssl.modalities.image.methods.jigsaw import sample_tile_corners

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "image" / "cifar10"
# recipe stem -> registered method name
METHODS = {
    "simclr": "simclr",
    "moco_v2": "moco",
    "byol": "byol",
    "mae": "mae",
    "inpainting": "inpainting",
    "rotation": "rotation",
    "jigsaw": "jigsaw",
    "context": "context",
    "colorization": "colorization",
}
PROFILES = [f"{stem}{suffix}" for stem in METHODS for suffix in ("", "_gpu")]


def test_every_image_method_has_a_cpu_and_a_gpu_profile():
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_recipe_loads_with_the_cifar10_protocol(name):
    cfg = load_recipe(RECIPES / f"{name}.yaml")
    assert cfg.method["name"] == METHODS[name.removesuffix("_gpu")]
    assert cfg.data["name"] == "image_folder"
    assert cfg.data["splits"] == {
        "train": "../shared/data/images/cifar10/train",
        "val": {"last_per_class": 500},
    }
    ev = cfg.eval
    assert ev["baselines"] == ["random_init"]
    assert list(ev["few_shot"]["shots"]) == [1, 10, 100]
    assert (ev["knn"]["k"], ev["knn"]["temperature"]) == (200, 0.07)
    assert "linear" in ev
    monitor = ev["monitor"]
    assert (monitor["bank_size"], monitor["query_size"], monitor["k"]) == (5000, 1000, 200)
    # About 10 monitor points per run; 5 where encoding the 6,000 monitor images costs ~30 s on the CPU
    # (the ViTs of MAE and inpainting, context's CNN at 64 px).
    assert 5 <= cfg.train.steps // monitor["every"] <= 12
    if name.endswith("_gpu"):
        assert cfg.train.device == "cuda"
    else:
        # sized for the 2-core CPU: 1 thread beside a decoding worker, or 2 where the worker is mostly idle
        assert cfg.train.device != "cuda" and cfg.train.num_threads in (1, 2)


@pytest.mark.parametrize("name", PROFILES)
def test_loading_does_not_read_the_data_folder(name, tmp_path):
    missing = tmp_path / "no_such_folder"
    cfg = load_recipe(RECIPES / f"{name}.yaml", [f"data.splits.train={missing}"])
    assert cfg.data["splits"]["train"] == str(missing) and not missing.exists()


@pytest.mark.parametrize(("name", "lr", "weight_decay"), [("simclr_gpu", 0.4, 1e-4), ("byol_gpu", 1.0, 1e-5)])
def test_gpu_profiles_use_solo_learn_lars(name, lr, weight_decay):
    """solo-learn's cifar/{simclr,byol}.yaml: LARS with eta 0.02 and clip_lr, none on biases and norms."""
    train = load_recipe(RECIPES / f"{name}.yaml").train
    assert (train.optimizer, train.lr, train.weight_decay) == ("lars", lr, weight_decay)
    assert (train.lars_eta, train.lars_clip, train.exclude_bias_and_norm) == (0.02, True, True)


@pytest.mark.parametrize("name", ["jigsaw", "jigsaw_gpu"])
def test_jigsaw_tiles_fit_the_image_size(name):
    cfg = load_recipe(RECIPES / f"{name}.yaml")
    m = cfg.method
    rows, cols = sample_tile_corners(
        4, cfg.data["image_size"], m["grid"], m["tile_size"], m["min_gap"], m["channel_jitter"]
    )
    assert rows.min() >= 0 and int(rows.max()) + m["tile_size"] <= cfg.data["image_size"]
    assert cols.min() >= 0 and int(cols.max()) + m["tile_size"] <= cfg.data["image_size"]


@pytest.mark.parametrize("name", ["context", "context_gpu"])
def test_context_patches_fit_the_image_size(name):
    cfg = load_recipe(RECIPES / f"{name}.yaml")
    m = cfg.method
    size = cfg.data["image_size"]
    top, left, _ = sample_context_pairs(64, size, m["patch_size"], m["gap"], m["jitter"])
    for corner in (top, left):
        assert corner.min() >= 0 and int(corner.max()) + m["patch_size"] <= size
