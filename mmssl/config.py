"""Recipe schema, YAML loading, dotted command-line overrides and helpful errors.

A recipe is data: a YAML file with the sections below. Fixed sections (``train``) are typed
dataclasses; component sections (``method``, ``encoder``, ``data``) name a registered builder and
pass it the remaining keys, which are checked against the builder's signature; ``eval`` maps
evaluator names to their options. Every unknown key is an error that names it and suggests the
closest valid key::

    name: simclr_shapes
    modality: image
    method:  {name: simclr, temperature: 0.5}
    encoder: {name: small_cnn}
    data:    {name: procedural_shapes, views: simclr}
    train:   {steps: 600, batch_size: 256, optimizer: lars, lr: 1.0}
    eval:    {baselines: [random_init], knn: {k: 200}, few_shot: {shots: [1, 5, 10]}}

Overrides use dotted paths: ``train.steps=200 data.root=/x eval.knn.k=20``; values are parsed as
YAML scalars/lists (``[1,5]``, ``true``, ``1e-3``) and then coerced to the field's type.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmssl.registry import DATASETS, ENCODERS, EVALUATORS, METHODS, RegistryError, closest


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names the key."""


@dataclass
class TrainConfig:
    """How the one trainer runs. ``lr`` is the learning rate at ``batch_size`` after scaling."""

    steps: int = 1000
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.1
    lr_scaling: str = "none"  # none | linear (lr * global_batch / 256, as SimCLR/BYOL)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    exclude_bias_and_norm: bool = True  # from weight decay and LARS adaptation (SimCLR/BYOL practice)
    clip_grad: float | None = None
    accumulate: int = 1
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    num_workers: int = 0
    # Intra-op CPU threads (None: torch's default). On small CPU machines 1 thread plus a data worker
    # avoids OpenMP oversubscription, which we measured at 10-30x slowdowns on 2 busy cores.
    num_threads: int | None = None
    ckpt_every: int = 500
    log_every: int = 10
    sync_bn: bool = False
    progress: bool = True
    compile: bool = False


OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class RecipeConfig:
    """A whole recipe after loading, overrides and validation."""

    name: str
    modality: str
    method: dict[str, Any]
    encoder: dict[str, Any]
    data: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    out_dir: str | None = None
    resume: str | None = None  # None | "auto" | path to a checkpoint
    ckpt: str | None = None  # checkpoint to evaluate (`mmssl eval`)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def component(self, section: str) -> tuple[str, dict[str, Any]]:
        """``(name, kwargs)`` of a component section."""
        spec = dict(getattr(self, section))
        return spec.pop("name"), spec


COMPONENT_SECTIONS = {"method": METHODS, "encoder": ENCODERS, "data": DATASETS}
EVAL_RESERVED = ("baselines", "batch_size")
BASELINES = ("random_init",)
# Keys a builder receives from the runner rather than from the recipe.
RUNNER_PROVIDED = ("encoder", "num_samples", "num_classes", "data")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if (origin is typing.Union or origin is types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0] if len(rest) == 1 else Any
    return False, tp


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to a dataclass field type, or raise naming ``where``."""
    optional, tp = _is_optional(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("null", "~")):
        if optional:
            return None
        raise ConfigError(f"'{where}' may not be null")
    origin = typing.get_origin(tp)
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
            return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    except (TypeError, ValueError):
        raise ConfigError(f"'{where}' expects {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value


def _build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"unknown key '{where}.{key}'{closest(key, names)}; valid keys: {', '.join(names)}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def _check_choice(value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise ConfigError(
            f"'{where}' must be one of {', '.join(choices)}, got '{value}'{closest(value, choices)}"
        )


def from_dict(raw: dict[str, Any], source: str = "<recipe>") -> RecipeConfig:
    """Validate a raw recipe mapping into a :class:`RecipeConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections")
    raw = copy.deepcopy(raw)
    top = [f.name for f in dataclasses.fields(RecipeConfig)]
    for key in raw:
        if key not in top:
            raise ConfigError(
                f"{source}: unknown key '{key}'{closest(key, top)}; valid keys: {', '.join(top)}"
            )
    for required in ("name", "modality", "method", "encoder", "data"):
        if required not in raw:
            raise ConfigError(f"{source}: missing required key '{required}'")
    for section, registry in COMPONENT_SECTIONS.items():
        spec = raw[section]
        if isinstance(spec, str):
            spec = raw[section] = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(
                f"{source}: section '{section}' needs a 'name' naming a registered {registry.kind}"
            )
        try:
            registry.get(spec["name"])
            kwargs = {k: v for k, v in spec.items() if k != "name"}
            registry.check_kwargs(spec["name"], kwargs, section, reserved=RUNNER_PROVIDED)
            check_nested(registry.get(spec["name"]), kwargs, section)
        except (RegistryError, ConfigError) as err:
            raise ConfigError(f"{source}: {err}") from None
    train = _build_dataclass(TrainConfig, raw.pop("train", None) or {}, "train")
    _check_choice(train.optimizer, OPTIMIZERS, "train.optimizer")
    _check_choice(train.schedule, SCHEDULES, "train.schedule")
    _check_choice(train.precision, PRECISIONS, "train.precision")
    _check_choice(train.lr_scaling, ("none", "linear"), "train.lr_scaling")
    if train.accumulate < 1 or train.steps < 0 or train.batch_size < 1:
        raise ConfigError("train.accumulate and train.batch_size must be >= 1 and train.steps >= 0")
    evals = raw.pop("eval", None) or {}
    _check_eval(evals, source)
    try:
        cfg = RecipeConfig(train=train, eval=evals, **raw)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from None
    for key in ("name", "modality", "description"):
        setattr(cfg, key, str(getattr(cfg, key)))
    return cfg


def check_nested(builder: Any, kwargs: dict[str, Any], where: str) -> None:
    """Let a builder whose options hold nested sections (e.g. a cross-modal method's ``towers``)
    validate them at load time: it may carry ``check_options(kwargs, where)``, raising
    ConfigError / RegistryError that names the nested key."""
    check = getattr(builder, "check_options", None)
    if check is not None:
        check(kwargs, where)


def _check_baselines(baselines: list[Any], source: str) -> None:
    """Baselines are ``random_init`` or ``{name: [overrides]}`` (the recipe retrained with overrides)."""
    if not isinstance(baselines, list):
        raise ConfigError(f"{source}: 'eval.baselines' must be a list")
    for b in baselines:
        if isinstance(b, dict) and len(b) == 1:
            ((name, overrides),) = b.items()
            if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
                raise ConfigError(
                    f"{source}: baseline 'eval.baselines.{name}' must list overrides like 'method.lambda_u=0'"
                )
        elif b not in BASELINES:
            raise ConfigError(
                f"{source}: unknown baseline 'eval.baselines: {b}'{closest(str(b), BASELINES)}; use "
                f"{', '.join(BASELINES)} or a mapping {{name: [overrides]}} (retrain with overrides)"
            )


def retrain_baselines(cfg: RecipeConfig) -> dict[str, RecipeConfig]:
    """Recipes of the baselines that retrain the recipe with overrides (validated, own out_dir)."""
    out: dict[str, RecipeConfig] = {}
    for b in cfg.eval.get("baselines", []) or []:
        if isinstance(b, dict):
            ((name, overrides),) = b.items()
            raw = cfg.to_dict()
            raw["eval"] = {k: v for k, v in raw["eval"].items() if k != "baselines"}
            raw["resume"] = raw["ckpt"] = None
            raw = apply_overrides(raw, list(overrides))
            out[name] = from_dict(raw, source=f"baseline '{name}'")
    return out


def _check_eval(evals: dict[str, Any], source: str) -> None:
    if not isinstance(evals, dict):
        raise ConfigError(f"{source}: section 'eval' must map evaluator names to options")
    valid = list(EVAL_RESERVED) + EVALUATORS.names()
    for key, options in evals.items():
        if key == "baselines":
            _check_baselines(options or [], source)
            continue
        if key in EVAL_RESERVED:
            continue
        if key not in EVALUATORS:
            raise ConfigError(
                f"{source}: unknown key 'eval.{key}'{closest(key, valid)}; valid keys: {', '.join(valid)}"
            )
        if options is None:
            evals[key] = options = {}
        if not isinstance(options, dict):
            raise ConfigError(f"{source}: 'eval.{key}' must be a mapping of options")
        try:
            EVALUATORS.check_kwargs(
                key, options, f"eval.{key}", reserved=("encoder", "data", "device", "seed")
            )
            check_nested(EVALUATORS.get(key), options, f"eval.{key}")
        except (RegistryError, ConfigError) as err:
            raise ConfigError(f"{source}: {err}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.steps=200'`` -> ``(['train', 'steps'], 200)``."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, value = text.split("=", 1)
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    # YAML 1.1 reads '1e-3' as a string; numbers written that way are meant as floats.
    if isinstance(parsed, str):
        try:
            parsed = (
                float(parsed) if any(c in parsed.lower() for c in "e.") and parsed[0] not in "/~" else parsed
            )
        except ValueError:
            pass
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a raw recipe mapping; sections are created where missing."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if isinstance(child, str) and part in COMPONENT_SECTIONS:
                child = node[part] = {"name": child}
            if not isinstance(child, dict):
                section = ".".join(path[: i + 1])
                raise ConfigError(f"override '{text}': '{section}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_raw(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return raw or {}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a YAML recipe, apply dotted overrides, validate everything."""
    raw = apply_overrides(load_raw(path), overrides or [])
    return from_dict(raw, source=str(path))


def dump(cfg: RecipeConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
