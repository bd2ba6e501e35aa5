"""Typed options: a recipe section checked against the builder it configures, and converted for it.

A component's options are its builder's keyword parameters; their annotations say what each takes:

* a dataclass annotation (e.g. ``acd: ACDParams``) makes the option a nested section, validated as one
  object: ``data.acd.threshold`` is checked against ``ACDParams``'s fields and coerced to their types;
* ``Annotated[dict[str, Any], Components("encoder")]`` makes it a mapping of nested component sections,
  ``{key: {name: <registered encoder>, ...options}}``, each checked against that registry (the builder
  receives the mapping as written and parses it with :func:`component_sections`);
* ``Annotated[SomeOptions, WHOLE_SECTION]`` makes the section's keys the fields of ``SomeOptions``: the
  builder receives the section as that one validated dataclass;
* anything else is passed through as the recipe wrote it.

Unknown keys, at any depth, are errors naming the full dotted path and the closest valid key. The same
function runs when a recipe is loaded (to fail early) and when a component is built (to convert).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from mmssl.errors import ConfigError
from mmssl.option_markers import WHOLE_SECTION, Components, WholeSection
from mmssl.registry import DATASETS, ENCODERS, EVALUATORS, METHODS, Registry, RegistryError, closest

REGISTRY_OF_KIND: dict[str, Registry] = {
    "method": METHODS,
    "encoder": ENCODERS,
    "dataset": DATASETS,
    "evaluator": EVALUATORS,
}


def _is_optional(tp: Any) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if (origin is typing.Union or origin is types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0] if len(rest) == 1 else Any
    return False, tp


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to a field type (bool, int, float, str, list[...], tuple[..., ...], a dataclass),
    or raise naming ``where``; other types pass through."""
    optional, tp = _is_optional(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("null", "~")):
        if optional:
            return None
        raise ConfigError(f"'{where}' may not be null")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}' is a section with keys {', '.join(field_names(tp))}, got {value!r}")
        return build_dataclass(tp, value, where)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if origin is list:
            (inner,) = typing.get_args(tp)
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is tuple and typing.get_args(tp)[1:] == (Ellipsis,):
            inner = typing.get_args(tp)[0]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    except (TypeError, ValueError):
        raise ConfigError(f"'{where}' expects {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build_dataclass(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)`` with every key checked (unknown keys named with the closest) and coerced."""
    hints = typing.get_type_hints(cls)
    markers = {k: _marker(h, Components) for k, h in typing.get_type_hints(cls, include_extras=True).items()}
    names = field_names(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"unknown key '{where}.{key}'{closest(key, names)}; valid keys: {', '.join(names)}"
            )
        if markers.get(key) is not None and value is not None:
            # Nested component sections: checked here, parsed by their user with component_sections.
            component_sections(value, REGISTRY_OF_KIND[markers[key].kind], f"{where}.{key}")
            kwargs[key] = value
            continue
        kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"'{where}': {err}") from None


def component_sections(sections: Any, registry: Registry, where: str) -> dict[str, dict[str, Any]]:
    """Validate ``{key: {name, **options}}`` (a bare string is ``{name: <string>}``); returns
    ``{key: {"name": ..., "kwargs": {...}}}``. Unknown names and keys are named as ``where.<key>...``."""
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
            builder = registry.get(spec["name"])
        except RegistryError as err:
            raise RegistryError(f"'{where}.{key}.name': {err}") from None
        kwargs = builder_options(
            builder, kwargs, f"{where}.{key}", kind=registry.kind, name=spec["name"], nested=True
        )
        specs[str(key)] = {"name": spec["name"], "kwargs": kwargs}
    return specs


def whole_section_type(builder: Callable[..., Any]) -> type | None:
    """The dataclass a builder takes its whole section as (``Annotated[X, WHOLE_SECTION]``), or None."""
    target = builder.__init__ if isinstance(builder, type) else builder
    for hint in typing.get_type_hints(target, include_extras=True).values():
        if _marker(hint, WholeSection) is not None:
            return typing.get_args(hint)[0]
    return None


def option_names(builder: Callable[..., Any], kind: str) -> list[str]:
    """The recipe keys a builder of ``kind`` accepts (its whole-section dataclass's fields, or its keyword
    parameters less the runner-provided ones)."""
    whole = whole_section_type(builder)
    if whole is not None:
        return field_names(whole)
    params = inspect.signature(builder).parameters
    return [
        p
        for p, v in params.items()
        if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY) and p not in RUNNER_PROVIDED.get(kind, ())
    ]


def _marker(hint: Any, kind: type) -> Any:
    """The ``Annotated`` metadata of type ``kind`` on ``hint``, or None."""
    return next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, kind)), None)


#: parameters a builder receives from the runner, by kind of component (never from the recipe)
RUNNER_PROVIDED: dict[str, tuple[str, ...]] = {
    "method": ("encoder", "data"),
    "encoder": (),
    "dataset": ("seed",),
    "evaluator": ("encoder", "data", "ctx"),
}

#: options every top-level section of a kind takes, handled by the library rather than its builder:
#: an encoder's ``weights: PATH`` (initial weights, loaded by :func:`mmssl.encoders.build_encoder`)
COMMON_OPTIONS: dict[str, dict[str, Any]] = {"encoder": {"weights": str | None}}


def builder_options(
    builder: Callable[..., Any],
    options: Mapping[str, Any],
    where: str,
    *,
    kind: str,
    name: str,
    nested: bool = False,
) -> dict[str, Any]:
    """Check a section's options against the builder's parameters and convert the typed ones (see the
    module docstring). ``where`` is the section's dotted path, used in messages. A ``nested`` section is
    built by library code with exactly these options (e.g. an evaluator's extra dataset may set its
    ``seed``); a top-level one also receives the runner's values (``RUNNER_PROVIDED``)."""
    params = inspect.signature(builder).parameters
    reserved = () if nested else RUNNER_PROVIDED.get(kind, ())
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [
        p
        for p, v in params.items()
        if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY) and p not in reserved
    ]
    target = builder.__init__ if isinstance(builder, type) else builder
    hints = typing.get_type_hints(target, include_extras=True)
    common = {} if nested else COMMON_OPTIONS.get(kind, {})
    out: dict[str, Any] = {
        key: coerce(value, common[key], f"{where}.{key}")
        for key, value in options.items()
        if key in common and key not in accepted
    }
    options = {key: value for key, value in options.items() if key not in out}
    whole = [key for key in accepted if _marker(hints.get(key), WholeSection) is not None]
    if whole:
        (key,) = whole
        return {**out, key: build_dataclass(typing.get_args(hints[key])[0], options, where)}
    for key, value in options.items():
        if key not in accepted:
            if takes_any and key not in reserved:
                out[key] = value
                continue
            valid = sorted({*accepted, *common})
            raise ConfigError(
                f"unknown key '{where}.{key}' for {kind} '{name}'{closest(key, valid)}; "
                f"valid keys: {', '.join(valid)}"
            )
        hint = hints.get(key)
        marker = _marker(hint, Components)
        if marker is not None:
            # Checked here; the builder parses the sections itself with component_sections.
            component_sections(value, REGISTRY_OF_KIND[marker.kind], f"{where}.{key}")
            out[key] = value
            continue
        optional, base = _is_optional(hint)
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            out[key] = coerce(value, hint, f"{where}.{key}")
            continue
        out[key] = value
    for key in accepted:
        if params[key].default is inspect.Parameter.empty and key not in options:
            raise ConfigError(f"'{where}.{key}' is required ({kind} '{name}' has no default for it)")
    return out


__all__ = [
    "Annotated",
    "Components",
    "WHOLE_SECTION",
    "WholeSection",
    "RUNNER_PROVIDED",
    "COMMON_OPTIONS",
    "build_dataclass",
    "whole_section_type",
    "builder_options",
    "coerce",
    "option_names",
    "component_sections",
]
