"""Towers named in a cross-modal recipe: built from their spec, and checked against a paired item.

The nested sections themselves (``method.towers``, ``eval.modality_few_shot.datasets``) are typed options
(``Components`` in :mod:`mmssl.options`), checked when the recipe is loaded; here the partner tower is built
and its item key is checked against a real pretraining item once the dataset exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from mmssl.errors import ConfigError
from mmssl.registry import ENCODERS, closest


def build_tower(spec: Mapping[str, Any], where: str) -> nn.Module:
    """Build an encoder from ``{"name", "kwargs"}``; it must expose ``out_dim`` (the encoder contract)."""
    tower = ENCODERS.build(spec["name"], **spec.get("kwargs", {}))
    if not isinstance(getattr(tower, "out_dim", None), int):
        raise TypeError(f"'{where}': encoder '{spec['name']}' has no integer attribute out_dim")
    return tower


def check_item_keys(keys: Mapping[str, str], dataset: Dataset) -> None:
    """Raise :class:`ConfigError` for a tower key that a paired item (``dataset[0]``) lacks.

    ``keys`` maps each item key to the recipe key that set it (named in the error).
    """
    item = dataset[0]
    if not isinstance(item, Mapping):
        raise ConfigError(
            "a cross-modal method needs paired items keyed by modality (e.g. {'image': ..., "
            f"'audio': ...}}), got {type(item).__name__}"
        )
    available = sorted(str(k) for k in item)
    for key, where in keys.items():
        if key not in item:
            raise ConfigError(
                f"'{where}': the pretraining items have no key '{key}'{closest(key, available)}; "
                f"item keys: {', '.join(available)}"
            )


def check_towers_with_extras(towers: Mapping[str, tuple[nn.Module, str]], extras: Iterable[Any]) -> None:
    """Let every extra of the bundle that constrains a tower check it: an extra with a method
    ``check_tower(key, tower, where)`` (e.g. the caption tokenizer: vocabulary size, pad id, length) is
    called for each ``key -> (tower, recipe key that built it)`` and raises naming that recipe key."""
    for extra in extras:
        check = getattr(extra, "check_tower", None)
        if callable(check):
            for key, (tower, where) in towers.items():
                check(key, tower, where)
