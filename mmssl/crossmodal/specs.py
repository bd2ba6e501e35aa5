"""Nested component sections: ``{key: {name: <registered>, ...kwargs}}`` checked against a registry.

A cross-modal recipe names components inside other sections: the partner tower of a method, by the
key its input has in a paired item (``image``, ``audio``, later ``text`` or ``points``), and extra
labelled datasets of an evaluator, by a label::

    method: {name: crossmodal_contrastive, towers: {audio: {name: audio_cnn, n_mels: 64}}}
    eval:   {modality_few_shot: {tower: audio, datasets: {fsdd: {name: fsdd, root: /data/fsdd}}}}

These sections are checked when the recipe is loaded, with the same messages as top-level sections
(unknown names and keys are named, with the closest valid one); tower keys are checked against a
real item once the dataset is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from mmssl.config import ConfigError
from mmssl.registry import ENCODERS, Registry, RegistryError, closest


def parse_specs(sections: Any, registry: Registry, where: str) -> dict[str, dict[str, Any]]:
    """Validate ``{key: {name, **kwargs}}``; returns ``{key: {"name": ..., "kwargs": {...}}}``.

    A bare string is shorthand for ``{name: <string>}``. Raises :class:`ConfigError` for a malformed
    section and :class:`RegistryError` for an unknown name or keyword, naming ``where.<key>`` (e.g.
    ``unknown key 'method.towers.audio.n_mel' for encoder 'audio_cnn' (did you mean 'n_mels'?)``).
    """
    if not isinstance(sections, Mapping) or not sections:
        raise ConfigError(
            f"'{where}' must map keys to {registry.kind} sections like {{key: {{name: <{registry.kind}>}}}}, "
            f"got {sections!r}"
        )
    specs: dict[str, dict[str, Any]] = {}
    for key, spec in sections.items():
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(
                f"'{where}.{key}' needs a 'name' naming a registered {registry.kind}, got {spec!r}"
            )
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        try:
            registry.get(spec["name"])
        except RegistryError as err:
            raise RegistryError(f"'{where}.{key}.name': {err}") from None
        registry.check_kwargs(spec["name"], kwargs, f"{where}.{key}")
        specs[str(key)] = {"name": spec["name"], "kwargs": kwargs}
    return specs


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
