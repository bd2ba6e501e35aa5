"""Recipe profiles (``profile=gpu``: ``<recipe>_gpu.yaml`` beside the recipe) and ``base`` files (a recipe
written as another one plus what changes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmssl.cli import list_recipes, main, resolve_recipe
from mmssl.config import ConfigError, load_raw, load_recipe

REPO = Path(__file__).resolve().parents[1]

RECIPE = {
    "name": "tiny",
    "modality": "image",
    "method": {"name": "simclr", "temperature": 0.5},
    "encoder": "small_cnn",
    "data": {"name": "procedural_shapes", "views": "simclr", "image_size": 32},
    "train": {"steps": 10, "batch_size": 8, "lr": 0.1, "num_threads": 1, "betas": [0.9, 0.99]},
    "eval": {"knn": {"k": 5}},
}


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_base_merges_section_by_section_and_the_file_wins(tmp_path):
    _write(tmp_path / "tiny.yaml", RECIPE)
    (tmp_path / "_parts").mkdir()
    _write(
        tmp_path / "_parts" / "fast.yaml",
        {"train": {"num_threads": None, "num_workers": 8, "batch_size": 16}},
    )
    child = {
        "base": ["tiny.yaml", "_parts/fast.yaml"],
        "name": "tiny_fast",
        "train": {"batch_size": 32, "betas": [0.8]},
        "encoder": {"widths": [8, 16, 32, 64]},  # options of the same encoder: merged into "small_cnn"
        "eval": {"knn": {"temperature": 0.1}},
    }
    raw = load_raw(_write(tmp_path / "tiny_fast.yaml", child))
    assert raw["name"] == "tiny_fast" and raw["modality"] == "image"
    # later bases over earlier ones, the file over all; lists are replaced, not appended
    assert raw["train"] == {
        "steps": 10,
        "batch_size": 32,
        "lr": 0.1,
        "num_threads": None,
        "num_workers": 8,
        "betas": [0.8],
    }
    assert raw["encoder"] == {"name": "small_cnn", "widths": [8, 16, 32, 64]}
    assert raw["eval"] == {"knn": {"k": 5, "temperature": 0.1}}
    assert raw["method"] == RECIPE["method"] and "base" not in raw
    cfg = load_recipe(tmp_path / "tiny_fast.yaml", ["train.steps=3"])
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.num_threads) == (3, 32, None)


def test_an_empty_section_changes_nothing_and_a_nameless_component_merges(tmp_path):
    _write(tmp_path / "_widths.yaml", {"encoder": {"widths": [8, 16, 32, 64]}})
    _write(tmp_path / "tiny.yaml", RECIPE)
    (tmp_path / "tiny_gpu.yaml").write_text("base: [_widths.yaml, tiny.yaml]\ntrain:\n  # nothing yet\n")
    raw = load_raw(tmp_path / "tiny_gpu.yaml")
    assert raw["train"] == RECIPE["train"]  # not wiped by the empty section
    assert raw["encoder"] == {"widths": [8, 16, 32, 64], "name": "small_cnn"}  # nameless: options kept


def test_a_component_naming_another_builder_replaces_the_base_section(tmp_path):
    _write(tmp_path / "tiny.yaml", {**RECIPE, "encoder": {"name": "small_cnn", "widths": [8, 16, 32, 64]}})
    raw = load_raw(_write(tmp_path / "other.yaml", {"base": "tiny.yaml", "encoder": {"name": "resnet18"}}))
    assert raw["encoder"] == {"name": "resnet18"}  # small_cnn's widths would not fit a ResNet


@pytest.mark.parametrize(
    "base, message",
    [
        ("missing.yaml", r"base 'missing.yaml' not found"),
        ("loop.yaml", r"base 'loop.yaml' includes itself"),
        (3, r"'base' must name a recipe file or a list of them"),
        ("list.yaml", r"base 'list.yaml' is not a mapping of recipe sections"),
        ([], r"'base' must name a recipe file or a list of them"),
    ],
)
def test_bad_bases_are_named(tmp_path, base, message):
    (tmp_path / "list.yaml").write_text("- one\n- two\n")
    path = _write(tmp_path / "loop.yaml", {**RECIPE, "base": base})
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_profile_loads_the_profile_file_beside_the_recipe(tmp_path):
    _write(tmp_path / "tiny.yaml", RECIPE)
    _write(tmp_path / "tiny_gpu.yaml", {"base": "tiny.yaml", "name": "tiny_gpu", "train": {"device": "cuda"}})
    cfg = load_recipe(tmp_path / "tiny.yaml", ["profile=gpu", "train.steps=4"])
    assert (cfg.name, cfg.train.device, cfg.train.steps) == ("tiny_gpu", "cuda", 4)
    assert load_recipe(tmp_path / "tiny.yaml").train.device == "auto"  # the recipe itself is unchanged
    with pytest.raises(
        ConfigError, match=r"no 'gpu' profile \(other_gpu.yaml is not beside it\); it has none"
    ):
        load_recipe(_write(tmp_path / "other.yaml", RECIPE), ["profile=gpu"])
    _write(tmp_path / "tiny_mae.yaml", RECIPE)  # a sibling recipe, not a profile of tiny
    with pytest.raises(ConfigError, match=r"unknown profile 'mae'; profiles: gpu"):
        load_recipe(tmp_path / "tiny.yaml", ["profile=mae"])
    with pytest.raises(ConfigError, match="one profile at a time"):
        load_recipe(tmp_path / "tiny.yaml", ["profile=gpu", "profile=cpu"])


def _cpu_recipes() -> list[str]:
    return [name for name in list_recipes() if not name.endswith("_gpu")]


def test_every_recipe_has_a_gpu_profile_on_cuda_with_bf16():
    assert "_profiles/gpu" not in list_recipes()  # a partial recipe, not one of its own
    for name in _cpu_recipes():
        cfg = load_recipe(resolve_recipe(name), ["profile=gpu"])
        assert cfg.train.device == "cuda", name
        assert cfg.train.precision in ("bf16", "auto"), name  # auto is bf16 on CUDA
        if cfg.encoder["name"] in ("small_cnn", "resnet18", "wide_resnet", "audio_cnn", "video_cnn"):
            assert cfg.train.channels_last, name


def test_gpu_profiles_written_as_their_cpu_recipe_keep_its_optimisation():
    """The profiles that name their CPU recipe as a base claim its figures carry over: the same steps,
    batch, optimizer, learning rate and weight decay (only how the run is executed changes)."""
    based = 0
    for name in _cpu_recipes():
        path = resolve_recipe(name)
        profile = path.with_name(f"{path.stem}_gpu.yaml")
        if path.name not in (yaml.safe_load(profile.read_text()).get("base") or []):
            continue  # a published full-scale configuration (the CIFAR-10 profiles)
        based += 1
        cpu, gpu = load_recipe(path).train, load_recipe(path, ["profile=gpu"]).train
        keys = (
            "steps",
            "batch_size",
            "accumulate",
            "optimizer",
            "lr",
            "lr_scaling",
            "weight_decay",
            "warmup_steps",
        )
        assert [getattr(gpu, k) for k in keys] == [getattr(cpu, k) for k in keys], name
        assert (gpu.num_workers, gpu.num_threads, gpu.precision) == (8, None, "bf16"), name
        assert load_recipe(path, ["profile=gpu"]).method == load_recipe(path).method, name
    assert based >= 30


def test_cli_lists_profiles_under_their_recipe_and_shows_the_merged_profile(capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert any(line.split() == ["quickstart", "profiles:", "gpu"] for line in listing.splitlines())
    assert "quickstart_gpu" not in listing and "_profiles" not in listing
    assert main(["show", "quickstart", "profile=gpu"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["name"] == "quickstart_gpu" and shown["train"]["device"] == "cuda"
    assert shown["train"]["steps"] == load_recipe(REPO / "recipes" / "quickstart.yaml").train.steps


def test_a_gpu_profile_trains_on_the_cpu_when_told_to(tmp_path):
    """The profile's settings (bf16 autocast, channels_last, loader workers) run through the real pipeline;
    on the CPU here, as benchmarks/gpu_check.py --device cpu does."""
    from mmssl import pipeline

    cfg = load_recipe(
        resolve_recipe("quickstart"),
        ["profile=gpu", "train.device=cpu", "train.steps=2", "train.batch_size=16", "train.num_workers=1"]
        + ["train.ckpt_every=0", "train.progress=false", "eval.monitor.every=0", f"out_dir={tmp_path}"],
    )
    assert cfg.train.channels_last and cfg.train.precision == "bf16"
    _, _, result, _ = pipeline.train(cfg)
    assert result.steps == 2 and result.final_loss == result.final_loss  # finite, not NaN
