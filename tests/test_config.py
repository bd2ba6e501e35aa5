"""Recipe loading, overrides and the errors a user sees for mistyped keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmssl.cli import list_recipes, main, resolve_recipe
from mmssl.config import ConfigError, TrainConfig, apply_overrides, load_recipe, parse_override

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def test_every_recipe_loads():
    names = list_recipes()
    assert "quickstart" in names
    for name in names:
        cfg = load_recipe(resolve_recipe(name))
        assert isinstance(cfg.train, TrainConfig)
        assert cfg.method["name"] and cfg.encoder["name"] and cfg.data["name"]


def test_overrides_are_typed():
    cfg = load_recipe(
        QUICKSTART,
        [
            "train.steps=7",
            "train.lr=1e-3",
            "data.cache_dir=/x/y",
            "eval.knn.k=5",
            "train.clip_grad=null",
            "train.betas=[0.9,0.95]",
            "out_dir=/tmp/r",
        ],
    )
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.betas == [0.9, 0.95]
    assert cfg.train.clip_grad is None
    assert cfg.eval["knn"]["k"] == 5
    assert cfg.out_dir == "/tmp/r"


def test_parse_override_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[1,5,10]") == (["a"], [1, 5, 10])
    assert parse_override("x=/data/one.two") == (["x"], "/data/one.two")
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("no-equals-sign")


@pytest.mark.parametrize(
    "override, named, suggestion",
    [
        ("train.stpes=5", "train.stpes", "steps"),
        ("trian.steps=5", "trian", "train"),
        ("method.temprature=0.1", "method.temprature", "temperature"),
        ("encoder.small_stm=true", "encoder.small_stem", None),
        ("data.image_sise=64", "data.image_sise", "image_size"),
        ("eval.knnn.k=3", "eval.knnn", "knn"),
        ("eval.knn.kk=3", "eval.knn.kk", "k"),
    ],
)
def test_mistyped_key_names_it_and_suggests(override, named, suggestion):
    if override.startswith("encoder."):  # small_cnn has no small_stem; use resnet18 which does
        overrides = ["encoder={name: resnet18}", override]
        named, suggestion = "encoder.small_stm", "small_stem"
    else:
        overrides = [override]
    with pytest.raises(ConfigError) as err:
        load_recipe(QUICKSTART, overrides)
    assert named in str(err.value)
    assert f"did you mean '{suggestion}'" in str(err.value)


def test_wrong_type_and_choice_are_named():
    with pytest.raises(ConfigError, match="train.steps"):
        load_recipe(QUICKSTART, ["train.steps=many"])
    with pytest.raises(ConfigError, match="train.optimizer.*did you mean 'lars'"):
        load_recipe(QUICKSTART, ["train.optimizer=lasr"])
    with pytest.raises(ConfigError, match="unknown method 'simclrr'.*did you mean 'simclr'"):
        load_recipe(QUICKSTART, ["method.name=simclrr"])
    for bad in ("0", ".nan", ".inf"):
        with pytest.raises(ConfigError, match="train.lars_eta must be > 0"):
            load_recipe(QUICKSTART, [f"train.lars_eta={bad}"])


def test_apply_overrides_does_not_mutate():
    raw = {"train": {"steps": 1}}
    out = apply_overrides(raw, ["train.steps=2"])
    assert raw["train"]["steps"] == 1 and out["train"]["steps"] == 2


def test_cli_reports_config_error(capsys):
    code = main(["show", str(QUICKSTART), "train.stpes=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train.stpes" in err and "did you mean 'steps'" in err


def test_cli_show_and_list(capsys):
    assert main(["show", "quickstart", "train.steps=3"]) == 0
    assert "steps: 3" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("quickstart", "simclr", "moco", "byol", "small_cnn", "procedural_shapes", "knn", "few_shot"):
        assert word in out


def test_davis_has_no_classes_so_knn_is_refused_when_the_recipe_loads():
    # Found running video/simclr on DAVIS frames: the kNN evaluator failed after pretraining.
    with pytest.raises(ConfigError, match=r"eval\.knn .*dataset 'davis' has none"):
        load_recipe(resolve_recipe("video/simclr"), ["data.name=davis"])
    load_recipe(resolve_recipe("video/crw"), ["data.name=davis"])  # label propagation only: fine
