"""One registry for everything a recipe can name: methods, encoders, datasets, evaluators.

A recipe section such as ``encoder: {name: resnet18, small_stem: true}`` is resolved by looking
``name`` up in the matching registry and calling the registered builder with the remaining keys (checked
against the builder's typed parameters by :mod:`mmssl.options`).

Registration is one table per package, never an import side effect: ``mmssl/<package>/components.py``
(and ``mmssl/modalities/<name>/components.py`` for every modality, found by listing the folder) maps each
name to ``"module:attribute"`` in dicts ``METHODS``, ``ENCODERS``, ``DATASETS``, ``EVALUATORS``; the table's
``MODALITY`` names the modality of its entries, and an entry written ``(target, modality)`` overrides it.
Reading a table imports nothing else, so listing names is cheap, and a
lookup imports only the module of the name asked for: loading an image encoder never imports video,
point-cloud or text code. Packages outside mmssl add tables through the ``mmssl.components`` entry-point
group; a script adds one component with :meth:`Registry.register` (the same table, one entry).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any


class RegistryError(KeyError):
    """An unknown name or a keyword the builder does not accept."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def closest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A 'did you mean' suffix, or an empty string when nothing is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def resolve_target(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Registry:
    """A name -> builder table for one kind of component (``kind`` is used in error messages).

    Entries hold either the builder itself or a ``"module:attribute"`` string that is imported on the
    first lookup of that name. A module that fails to import (a missing optional dependency) is named,
    with its error, in the message of the lookup that needed it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, Any] = {}  # as registered: a builder or "module:attribute"
        self._resolved: dict[str, Any] = {}  # imported builders, by name
        self._modality: dict[str, str | None] = {}

    def register(self, name: str, target: Any, *, modality: str | None = None) -> None:
        """Add ``name -> target`` (a builder, or ``"module:attribute"`` to import when first looked up)."""
        if name in self._targets and self._targets[name] != target:
            raise RegistryError(
                f"{self.kind} '{name}' is registered twice ({self._targets[name]!r}, {target!r})"
            )
        self._targets[name] = target
        self._modality[name] = modality

    def get(self, name: str) -> Callable[..., Any]:
        load_tables()
        if name not in self._targets:
            raise RegistryError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; "
                f"available: {', '.join(self.names())}"
            )
        if name not in self._resolved:
            target = self._targets[name]
            try:
                self._resolved[name] = resolve_target(target) if isinstance(target, str) else target
            except ImportError as err:
                raise RegistryError(
                    f"{self.kind} '{name}' could not be loaded: importing {target} failed ({err})"
                ) from err
        return self._resolved[name]

    def target_of(self, name: str) -> str:
        """``"module:attribute"`` of a name without importing it (a registered object: its own path)."""
        load_tables()
        target = self._targets[name]
        return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"

    def names(self, modality: str | None = None) -> list[str]:
        load_tables()
        return sorted(k for k in self._targets if modality is None or self._modality[k] == modality)

    def modality_of(self, name: str) -> str | None:
        load_tables()
        if name not in self._targets:
            self.get(name)  # raises the unknown-name error
        return self._modality[name]

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        load_tables()
        return name in self._targets


METHODS = Registry("method")
ENCODERS = Registry("encoder")
DATASETS = Registry("dataset")
EVALUATORS = Registry("evaluator")
REGISTRIES = {"METHODS": METHODS, "ENCODERS": ENCODERS, "DATASETS": DATASETS, "EVALUATORS": EVALUATORS}

#: the packages outside ``mmssl.modalities`` that have a components table
CORE_TABLES = (
    "mmssl.core.components",
    "mmssl.eval.components",
    "mmssl.semi.components",
    "mmssl.crossmodal.components",
)
ENTRY_POINT_GROUP = "mmssl.components"
_loaded = False


def table_modules() -> list[str]:
    """Every built-in table module: the fixed ones, then one per folder under ``mmssl/modalities``."""
    import mmssl.modalities

    modalities = sorted(
        f"mmssl.modalities.{info.name}.components"
        for info in pkgutil.iter_modules(mmssl.modalities.__path__)
        if info.ispkg
    )
    return [*CORE_TABLES, *modalities]


def add_table(table: Any, source: str) -> None:
    """Register every entry of a table module (``METHODS``/``ENCODERS``/``DATASETS``/``EVALUATORS`` dicts)."""
    default = getattr(table, "MODALITY", None)
    for attr, registry in REGISTRIES.items():
        entries: Mapping[str, Any] = getattr(table, attr, {})
        for name, entry in entries.items():
            target, modality = entry if isinstance(entry, tuple) else (entry, default)
            if not isinstance(target, str) or ":" not in target:
                raise RegistryError(f"{source}: {attr}['{name}'] must be 'module:attribute', got {target!r}")
            registry.register(name, target, modality=modality)


def load_tables() -> None:
    """Read the built-in tables and the entry-point tables once (imports only the table modules)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in table_modules():
        add_table(importlib.import_module(module), module)
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        add_table(entry_point.load(), f"entry point {entry_point.name}")
