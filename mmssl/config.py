"""Recipe schema, YAML loading, dotted command-line overrides and helpful errors.

A recipe is data: a YAML file with the sections below. Fixed sections (``train``) are typed
dataclasses; component sections (``method``, ``encoder``, ``data``) name a registered builder and
pass it the remaining keys, which are checked against the builder's signature; ``eval`` maps
evaluator names to their options (besides ``baselines``, ``monitor`` and ``num_threads``, see
:data:`EVAL_RESERVED`). Every unknown key is an error that names it and suggests the
closest valid key::

    name: simclr_shapes
    modality: image
    method:  {name: simclr, temperature: 0.5}
    encoder: {name: small_cnn}
    data:    {name: procedural_shapes, views: simclr}
    train:   {steps: 600, batch_size: 256, optimizer: lars, lr: 1.0}
    eval:    {baselines: [random_init], knn: {k: 200}, few_shot: {shots: [1, 5, 10]}}
    log:     {wandb: {project: mmssl, mode: offline}}   # optional; absent: metrics.jsonl + TensorBoard only

Overrides use dotted paths: ``train.steps=200 data.root=/x eval.knn.k=20``; values are parsed as
YAML scalars/lists (``[1,5]``, ``true``, ``1e-3``) and then coerced to the field's type.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmssl.core.method import method_class
from mmssl.data.keys import check_batch_keys
from mmssl.data.source import DataSource
from mmssl.errors import ConfigError
from mmssl.eval.monitor import MonitorOptions
from mmssl.option_markers import ScoresLabelledSplits
from mmssl.options import build_dataclass, builder_options, whole_section_type
from mmssl.registry import DATASETS, ENCODERS, EVALUATORS, METHODS, RegistryError, closest
from mmssl.train.config import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, TrainConfig
from mmssl.train.run_logger import WANDB_MODES, LogOptions


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
    log: LogOptions = field(default_factory=LogOptions)  # optional loggers (log.wandb)
    export: list[str] = field(default_factory=list)  # formats `mmssl run` exports the encoder to at the end
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
# The eval keys that are not evaluators: ``baselines`` (random_init, retrained variants), ``monitor`` (the
# online kNN while training) and ``num_threads`` (intra-op CPU threads of the evaluation after training).
EVAL_RESERVED = ("baselines", "monitor", "num_threads")
BASELINES = ("random_init",)


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
            builder = registry.get(spec["name"])
            kwargs = {k: v for k, v in spec.items() if k != "name"}
            builder_options(builder, kwargs, section, kind=registry.kind, name=spec["name"])
        except (RegistryError, ConfigError) as err:
            raise ConfigError(f"{source}: {err}") from None
    _check_contract(raw, source)
    train = build_dataclass(TrainConfig, raw.pop("train", None) or {}, "train")
    _check_choice(train.optimizer, OPTIMIZERS, "train.optimizer")
    _check_choice(train.schedule, SCHEDULES, "train.schedule")
    _check_choice(train.precision, PRECISIONS, "train.precision")
    _check_choice(train.strategy, STRATEGIES, "train.strategy")
    _check_choice(train.lr_scaling, ("none", "linear"), "train.lr_scaling")
    if train.accumulate < 1 or train.steps < 0 or train.batch_size < 1:
        raise ConfigError("train.accumulate and train.batch_size must be >= 1 and train.steps >= 0")
    if not (math.isfinite(train.lars_eta) and train.lars_eta > 0):
        raise ConfigError(f"{source}: train.lars_eta must be > 0 and finite, got {train.lars_eta}")
    evals = raw.pop("eval", None) or {}
    _check_eval(evals, source)
    _check_labelled(raw, evals, source)
    log = _check_log(raw.pop("log", None) or {}, source)
    export = _check_export(raw.pop("export", None) or [], source)
    try:
        cfg = RecipeConfig(train=train, eval=evals, log=log, export=export, **raw)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from None
    for key in ("name", "modality", "description"):
        setattr(cfg, key, str(getattr(cfg, key)))
    return cfg


def _check_export(formats: Any, source: str) -> list[str]:
    """``export: [safetensors, onnx, ...]``: formats of ``mmssl export``, run at the end of ``mmssl run``."""
    from mmssl.export.common import FORMATS

    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list):
        raise ConfigError(f"{source}: 'export' must be a list of formats ({', '.join(FORMATS)})")
    for fmt in formats:
        _check_choice(str(fmt), FORMATS, "export")
    return [str(f) for f in formats]


def _check_log(section: Any, source: str) -> LogOptions:
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: section 'log' must be a mapping like {{wandb: {{project: NAME}}}}")
    try:
        log = build_dataclass(LogOptions, section, "log")
        if log.wandb is not None:
            _check_choice(log.wandb.mode, WANDB_MODES, "log.wandb.mode")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return log


def _check_contract(raw: dict[str, Any], source: str) -> None:
    """The method's batch keys must be among those the dataset's items produce with these options."""
    method_name, data_name = raw["method"]["name"], raw["data"]["name"]
    source_builder = DATASETS.get(data_name)
    if not isinstance(source_builder, DataSource):
        raise ConfigError(
            f"{source}: dataset '{data_name}' does not declare the batch keys it produces "
            "(wrap its builder with mmssl.data.data_source)"
        )
    method_options = {k: v for k, v in raw["method"].items() if k != "name"}
    data_options = {k: v for k, v in raw["data"].items() if k != "name"}
    consumed = method_class(METHODS.get(method_name), method_name).consumed_keys(method_options)
    check_batch_keys(consumed, source_builder.produced_keys(data_options), method_name, data_name, source)


def _check_labelled(raw: dict[str, Any], evals: dict[str, Any], source: str) -> None:
    """Evaluators that score labelled splits need a dataset that has them with the recipe's options."""
    data_name = raw["data"]["name"]
    data_options = {k: v for k, v in raw["data"].items() if k != "name"}
    if DATASETS.get(data_name).gives_labelled_splits(data_options):
        return
    needing = [
        name
        for name in evals
        if name not in EVAL_RESERVED and _scores_labelled_splits(whole_section_type(EVALUATORS.get(name)))
    ]
    if (evals.get("monitor") or {}).get("every", 0):
        needing.append("monitor")
    if needing:
        raise ConfigError(
            f"{source}: {', '.join(f'eval.{n}' for n in needing)} score(s) labelled evaluation splits, but "
            f"dataset '{data_name}' has none with these options (give it labelled splits, or drop them)"
        )


def _scores_labelled_splits(options_type: type | None) -> bool:
    return options_type is not None and issubclass(options_type, ScoresLabelledSplits)


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
        if key == "monitor":
            try:
                build_dataclass(MonitorOptions, options or {}, "eval.monitor")
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
            continue
        if key == "num_threads":
            if options is not None and (type(options) is not int or options < 1):
                raise ConfigError(
                    f"{source}: 'eval.num_threads' must be a positive integer or null, got {options!r}"
                )
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
            builder_options(EVALUATORS.get(key), options, f"eval.{key}", kind="evaluator", name=key)
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


def load_raw(path: str | Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe mapping of one YAML file, its ``base`` files merged in (see :func:`merge_recipes`).

    ``base: FILE`` or ``base: [FILE, ...]`` (paths relative to the recipe's folder) names recipes, or
    partial recipes such as ``recipes/_profiles/gpu.yaml``, that this one starts from: the bases merge in
    order, then the file's own keys over them. A GPU profile is written this way, as the CPU recipe plus
    what changes.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file (not UTF-8: {err.reason} at byte {err.start})") from None
    if not isinstance(raw, dict) or "base" not in raw:
        return raw or {}
    bases = raw.pop("base")
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError(
            f"{path}: 'base' must name a recipe file or a list of them (relative to {path.parent})"
        )
    including = (*_including, path.resolve())
    merged: dict[str, Any] = {}
    for name in bases:
        base = path.parent / name
        if base.resolve() in including:
            chain = " -> ".join(str(p) for p in (*including, base.resolve()))
            raise ConfigError(f"{path}: base '{name}' includes itself ({chain})")
        if not base.is_file():
            raise ConfigError(f"{path}: base '{name}' not found ({base})")
        loaded = load_raw(base, including)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: base '{name}' is not a mapping of recipe sections ({base})")
        merged = merge_recipes(merged, loaded)
    return merge_recipes(merged, raw)


def merge_recipes(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else (values, lists) is replaced; an
    empty section (``train:`` with nothing under it) changes nothing. A component section (``method``,
    ``encoder``, ``data``) that names another builder than the base's replaces the base's section whole,
    since the base's options belong to the other builder."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        old = out.get(key)
        if key in COMPONENT_SECTIONS:
            old = {"name": old} if isinstance(old, str) else old
            value = {"name": value} if isinstance(value, str) else value
            names = [s.get("name") if isinstance(s, dict) else None for s in (old, value)]
            if None not in names and names[0] != names[1]:
                old = None
        out[key] = _merge_values(old, value)
    return out


def _merge_values(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and new is None:
        return copy.deepcopy(old)
    if isinstance(old, dict) and isinstance(new, dict):
        merged = copy.deepcopy(old)
        for key, value in new.items():
            merged[key] = _merge_values(merged.get(key), value)
        return merged
    return copy.deepcopy(new)


PROFILES = ("gpu",)  # recipe profiles: profile=gpu loads <recipe>_gpu.yaml


def profile_path(path: str | Path, profile: str) -> Path:
    """The file of a recipe's ``profile`` (one of :data:`PROFILES`; ``profile=gpu``):
    ``<recipe>_<profile>.yaml`` beside it."""
    path = Path(path)
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile '{profile}'{closest(profile, PROFILES)}; profiles: {', '.join(PROFILES)}"
        )
    candidate = path.with_name(f"{path.stem}_{profile}.yaml")
    if not candidate.is_file():
        others = [p for p in PROFILES if path.with_name(f"{path.stem}_{p}.yaml").is_file()]
        known = f"; its profiles: {', '.join(others)}" if others else "; it has none"
        raise ConfigError(f"{path}: no '{profile}' profile ({candidate.name} is not beside it){known}")
    return candidate


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a YAML recipe, apply dotted overrides, validate everything. The override ``profile=NAME`` loads
    the recipe's profile instead (:func:`profile_path`; ``profile=gpu``: the GPU profile)."""
    overrides = list(overrides or [])
    profiles = [text for text in overrides if parse_override(text)[0] == ["profile"]]
    if profiles:
        if len(profiles) > 1:
            raise ConfigError(f"{path}: one profile at a time, got {', '.join(profiles)}")
        path = profile_path(path, str(parse_override(profiles[0])[1]))
        overrides = [text for text in overrides if text not in profiles]
    raw = apply_overrides(load_raw(path), overrides)
    return from_dict(raw, source=str(path))


def dump(cfg: RecipeConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
