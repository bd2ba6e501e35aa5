"""The semi methods' typed options: the nested ``ood`` section, the flat keys, the builders' signatures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mmssl.config import apply_overrides, from_dict, load_raw
from mmssl.errors import ConfigError
from mmssl.options import builder_options, whole_section_type
from mmssl.registry import METHODS
from mmssl.semi.fixmatch import FixMatchOptions
from mmssl.semi.keys import U_INDEX, U_STRONG, U_WEAK, X_L, Y_L
from mmssl.semi.options import OODOptions, ScheduledOODOptions
from tests.semi._helpers import VecEncoder, bundle

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "semi"

#: every recipe key of each method (the shared ones, then the method's own)
KEYS = {
    "fixmatch": {"threshold", "temperature", "ema_decay"},
    "mean_teacher": {"rampup", "ema_decay", "ema_decay_rampup"},
    "entropy_min": {"rampup", "unlabelled_view", "ema_decay"},
    "self_training": {"rounds", "selection", "threshold", "top_fraction", "reinit_student", "student_view"},
    "data_distillation": {
        "teacher_fraction",
        "flips",
        "scales",
        "threshold",
        "balance",
        "reinit_student",
        "student_view",
    },
}
SHARED = {"unlabelled_weight", "ood", "pool_batch_size"}


def _recipe(name: str, overrides: list[str]) -> dict:
    return apply_overrides(load_raw(RECIPES / f"{name}.yaml"), overrides)


def _build(raw: dict):
    """The method as the runner builds it: the recipe's options, checked and converted."""
    cfg = from_dict(raw)
    options = {k: v for k, v in cfg.method.items() if k != "name"}
    builder = METHODS.get(cfg.method["name"])
    kwargs = builder_options(builder, options, "method", kind="method", name=cfg.method["name"])
    labelled, pool = torch.randn(12, 8), torch.randn(20, 8)
    return builder(VecEncoder(8), bundle(pool, labelled, torch.arange(12) % 3, num_classes=3), **kwargs)


@pytest.mark.parametrize("name", sorted(KEYS))
def test_each_builder_takes_the_shared_keys_and_its_own(name):
    options = whole_section_type(METHODS.get(name))
    assert {f.name for f in dataclasses.fields(options)} == SHARED | KEYS[name]


def test_a_misspelt_ood_key_is_named_with_its_full_path_and_the_closest_key():
    raw = _recipe("fixmatch", [])
    raw["method"] = {"name": "fixmatch", "ood": {"gaurd": "energy"}}
    with pytest.raises(ConfigError, match=r"method\.ood\.gaurd.*did you mean 'guard'"):
        from_dict(raw)


def test_the_flat_ood_keys_are_gone():
    with pytest.raises(ConfigError, match=r"method\.ood_guard.*did you mean 'ood'"):
        from_dict(_recipe("fixmatch", ["method.ood_guard=energy"]))


def test_ood_values_are_checked_when_the_recipe_loads():
    with pytest.raises(ConfigError, match=r"method\.ood.*guard must be one of none, max_softmax"):
        from_dict(_recipe("fixmatch", ["method.ood.guard=mahalanobis"]))
    with pytest.raises(ConfigError, match=r"method\.ood\.every.*expects int"):
        from_dict(_recipe("fixmatch", ["method.ood.every=often"]))
    # Methods with phases score at their boundaries: no schedule to set.
    with pytest.raises(ConfigError, match=r"method\.ood\.start"):
        from_dict(_recipe("self_training", ["method.ood.start=0.5"]))


def test_a_valid_ood_section_reaches_the_guard():
    raw = _recipe("fixmatch", ["method.ood.guard=energy", "method.ood.quantile=0.9", "method.ood.every=10"])
    method = _build(raw)
    assert method.options.ood == ScheduledOODOptions(guard="energy", quantile=0.9, every=10)
    assert method.guard.kind == "energy" and method.guard.quantile == 0.9 and method.guard.threshold is None
    assert not method.ood_keep.any()  # nothing trusted before the first scoring
    st = _build(_recipe("self_training", ["method.ood.threshold=0.3", "method.ood.k=2"]))
    assert st.options.ood == OODOptions(guard="knn", threshold=0.3, quantile=0.95, k=2)  # recipe: knn
    assert (st.guard.kind, st.guard.threshold, st.guard.k) == ("knn", 0.3, 2)


def test_recipe_defaults_are_the_builders_defaults():
    method = _build(_recipe("mean_teacher", []))
    assert method.options.ood == ScheduledOODOptions()  # guard none, first scoring at 0.2, once
    assert method.guard.kind == "none" and method.ood_keep.all()
    assert method.options.ema_decay_rampup == 0.99 and method.unlabelled_weight == 100.0


def test_scheduled_scoring_steps():
    ood = ScheduledOODOptions(guard="energy", start=0.2, every=3)
    assert [s for s in range(1, 21) if ood.due(s, 20)] == [4, 7, 10, 13, 16, 19]
    assert [s for s in range(1, 11) if ScheduledOODOptions(start=0.0).due(s, 10)] == [1]


@pytest.mark.parametrize(
    ("name", "option", "view"),
    [("entropy_min", "unlabelled_view", U_STRONG), ("self_training", "student_view", U_STRONG)],
)
def test_the_view_option_sets_the_consumed_batch_key(name, option, view):
    cls = METHODS.get(name)
    assert cls.consumed_keys({option: "strong"}) == {X_L, Y_L, U_INDEX, view}
    assert cls.consumed_keys({}) == {X_L, Y_L, U_INDEX, U_WEAK}
    assert cls.consumed_keys({option: "strong", "unlabelled_weight": 0}) == {X_L, Y_L}
    with pytest.raises(ConfigError, match=f"method.{option} must be one of weak, strong"):
        cls.consumed_keys({option: "u_strong"})


def test_options_are_converted_and_checked_as_one_dataclass():
    data = bundle(torch.randn(20, 8), torch.randn(12, 8), torch.arange(12) % 3, num_classes=3)
    builder = METHODS.get("fixmatch")
    kwargs = builder_options(
        builder, {"threshold": "0.5", "ood": {"guard": "knn"}}, "method", kind="method", name="fixmatch"
    )
    assert kwargs == {"options": FixMatchOptions(threshold=0.5, ood=ScheduledOODOptions(guard="knn"))}
    method = builder(VecEncoder(8), data, **kwargs)
    assert method.options.threshold == 0.5 and method.guard.kind == "knn"
    with pytest.raises(ConfigError, match=r"method\.treshold.*did you mean 'threshold'"):
        builder_options(builder, {"treshold": 0.5}, "method", kind="method", name="fixmatch")
