"""One registry for everything a recipe can name: methods, encoders, datasets, evaluators.

A recipe section such as ``encoder: {name: resnet18, small_stem: true}`` is resolved by looking
``name`` up in the matching registry and calling the registered builder with the remaining keys.
Keys are checked against the builder's signature, so a typo is reported with the closest valid key
before anything is built.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import warnings
from collections.abc import Callable
from typing import Any


class RegistryError(KeyError):
    """An unknown name or a keyword the builder does not accept."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def closest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A 'did you mean' suffix, or an empty string when nothing is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry:
    """A name -> builder table for one kind of component (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._modality: dict[str, str | None] = {}

    def register(self, name: str | None = None, *, modality: str | None = None) -> Callable:
        """Decorator: ``@ENCODERS.register("resnet18", modality="image")``."""

        def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
            key = name or builder.__name__
            if key in self._entries and self._entries[key] is not builder:
                raise RegistryError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = builder
            self._modality[key] = modality
            return builder

        return wrap

    def get(self, name: str) -> Callable[..., Any]:
        load_builtin_components()
        if name not in self._entries:
            failed = "".join(f"; {mod} could not be imported ({err})" for mod, err in IMPORT_ERRORS.items())
            raise RegistryError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; "
                f"available: {', '.join(self.names())}{failed}"
            )
        return self._entries[name]

    def names(self, modality: str | None = None) -> list[str]:
        load_builtin_components()
        return sorted(k for k in self._entries if modality is None or self._modality[k] == modality)

    def modality_of(self, name: str) -> str | None:
        self.get(name)
        return self._modality[name]

    def accepted_keys(self, name: str) -> list[str] | None:
        """Keyword names the builder accepts, or None when it takes ``**kwargs``."""
        params = inspect.signature(self.get(name)).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def check_kwargs(
        self, name: str, kwargs: dict[str, Any], where: str, reserved: tuple[str, ...] = ()
    ) -> None:
        """Raise naming ``where.key`` for any key the builder does not take."""
        accepted = self.accepted_keys(name)
        if accepted is None:
            return
        accepted = [k for k in accepted if k not in reserved]
        for key in kwargs:
            if key not in accepted:
                raise RegistryError(
                    f"unknown key '{where}.{key}' for {self.kind} '{name}'{closest(key, accepted)}; "
                    f"valid keys: {', '.join(sorted(accepted))}"
                )

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        load_builtin_components()
        return name in self._entries


METHODS = Registry("method")
ENCODERS = Registry("encoder")
DATASETS = Registry("dataset")
EVALUATORS = Registry("evaluator")

# Modules whose import registers built-in components. A modality whose optional dependency is
# missing is skipped here and reported when one of its components is asked for by name.
_BUILTIN_MODULES = (
    "mmssl.core.siamese",
    "mmssl.eval",
    "mmssl.modalities.image",
    "mmssl.modalities.image.methods",
    "mmssl.semi",
    "mmssl.crossmodal",
    "mmssl.modalities.video.data",
    "mmssl.modalities.video.encoders",
    "mmssl.modalities.video.crw",
    "mmssl.modalities.video.eval",
    "mmssl.modalities.video.future_cvae",
    "mmssl.modalities.video.dpc",
    "mmssl.modalities.pointcloud.data",
    "mmssl.modalities.pointcloud.encoders",
    "mmssl.modalities.pointcloud.acd_pretext",
    "mmssl.modalities.pointcloud.partseg",
    "mmssl.modalities.text",
    "mmssl.modalities.audio.encoders",
    "mmssl.modalities.audio.data",
    "mmssl.modalities.audio.paired",
    "mmssl.modalities.audio.methods",
)
_loaded = False
#: module -> import error message, for the modules of ``_BUILTIN_MODULES`` that could not be imported
IMPORT_ERRORS: dict[str, str] = {}


def load_builtin_components() -> None:
    """Import every built-in module once. One whose import fails (a missing optional dependency) is
    skipped with a warning; unknown-name errors then say which module failed and why."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as err:
            IMPORT_ERRORS[module] = str(err)
            warnings.warn(f"mmssl: skipped {module}: {err}", RuntimeWarning, stacklevel=2)
