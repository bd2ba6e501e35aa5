"""What every export format shares: reading a run directory, the error type, the result."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.safe_load import load_weights

FORMATS = ("safetensors", "timm", "torchvision", "onnx")


class ExportError(ValueError):
    """An export that cannot be done; the message names the file, key or encoder at fault."""


#: where a cross-modal run keeps its extra towers (``encoders/<key>.pt``) and an export writes them
TOWERS_DIR = "encoders"


@dataclass
class Tower:
    """One encoder file of a run: the run's encoder (``encoder.pt``) or an extra tower of a cross-modal run
    (``encoders/<key>.pt``, written by the pipeline from the method's ``extra_encoders()``).

    ``key``: the item key the tower reads (``image``, ``audio``, ``text`` ...); ``folder``: where its export
    goes inside the export folder (``""`` for the run's encoder, ``encoders/<key>`` for an extra tower, as
    in the run directory); ``spec``: the registry spec that rebuilds it."""

    key: str
    path: Path
    spec: dict[str, Any]  # {"name", "kwargs"}
    folder: str
    run_modality: str | None = None  # the run's (config.yaml), for an encoder the registry does not know

    @property
    def modality(self) -> str | None:
        """The encoder's own modality (the registry's; a cross-modal run's config names a pair), else the
        run's (only for the run's own encoder)."""
        from mmssl.registry import ENCODERS, RegistryError

        try:
            registered = ENCODERS.modality_of(self.spec["name"])
        except RegistryError:
            registered = None
        return registered or self.run_modality

    def encoder(self) -> nn.Module:
        """The encoder rebuilt from its file in eval mode (on CPU)."""
        from mmssl.encoders import load_encoder

        try:
            return load_encoder(self.path).eval()
        except (RuntimeError, ValueError, TypeError, KeyError) as err:
            raise ExportError(f"{self.path}: the encoder could not be rebuilt ({err})") from err


@dataclass
class RunInfo:
    """A finished run: its directory, its towers (``encoder.pt`` first, then a cross-modal run's
    ``encoders/<key>.pt``) and the run's config and metrics."""

    run_dir: Path
    towers: list[Tower]
    config: dict[str, Any]  # config.yaml ({} when absent)
    metrics: dict[str, Any] | None  # metrics.json (None when absent)

    @property
    def main(self) -> Tower:
        """The run's encoder (``encoder.pt``): what the evaluators measured."""
        return self.towers[0]

    @property
    def encoder_path(self) -> Path:
        return self.main.path

    @property
    def spec(self) -> dict[str, Any]:
        return self.main.spec

    @property
    def modality(self) -> str | None:
        return self.main.modality

    @property
    def crossmodal(self) -> bool:
        """True for a run with extra towers, whose export then names each tower."""
        return len(self.towers) > 1

    def data_options(self) -> dict[str, Any]:
        data = self.config.get("data")
        return dict(data) if isinstance(data, dict) else {}

    def encoder(self) -> nn.Module:
        """The run's encoder rebuilt from ``encoder.pt`` in eval mode (on CPU)."""
        return self.main.encoder()


def read_run(run_dir: str | Path) -> RunInfo:
    """The run at ``run_dir``; :class:`ExportError` naming the missing or unreadable file otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ExportError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a directory: pass the run directory that holds encoder.pt")
    encoder_path = run_dir / "encoder.pt"
    if not encoder_path.is_file():
        hint = (
            f" ({run_dir / 'checkpoints' / 'last.pt'} exists: the run stopped before training finished; "
            "resume it with resume=auto)"
            if (run_dir / "checkpoints" / "last.pt").is_file()
            else " (a run writes it when training finishes)"
        )
        raise ExportError(f"{encoder_path} not found{hint}")
    config = _read_config(run_dir / "config.yaml")
    spec = _read_spec(encoder_path)
    method = config.get("method") if isinstance(config.get("method"), dict) else {}
    run_modality = config.get("modality")
    main = Tower("encoder", encoder_path, spec, "", run_modality if isinstance(run_modality, str) else None)
    # The run's encoder reads method.encoder_key in a cross-modal run; else it is named by its modality.
    main.key = str(method.get("encoder_key") or main.modality or main.key)
    extras = [
        Tower(path.stem, path, _read_spec(path), f"{TOWERS_DIR}/{path.stem}")
        for path in sorted((run_dir / TOWERS_DIR).glob("*.pt"))
    ]
    return RunInfo(
        run_dir=run_dir,
        towers=[main, *extras],
        config=config,
        metrics=_read_metrics(run_dir / "metrics.json"),
    )


def _read_spec(path: Path) -> dict[str, Any]:
    """The registry spec ``{"name", "kwargs"}`` of an mmssl encoder file."""
    from mmssl.encoders import ENCODER_FORMAT

    try:
        raw = load_weights(path)
    except Exception as err:  # unpickling errors come in many types
        raise ExportError(f"{path} could not be read ({type(err).__name__}: {err})") from err
    if not isinstance(raw, dict) or raw.get("format") != ENCODER_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ExportError(f"{path} is not an mmssl encoder file (format {found!r}, not {ENCODER_FORMAT!r})")
    for key in ("name", "kwargs", "state_dict"):
        if key not in raw:
            raise ExportError(f"{path} has no '{key}' entry")
    return {"name": raw["name"], "kwargs": dict(raw["kwargs"])}


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ExportError(f"{path} is not valid YAML ({err})") from err
    return cfg if isinstance(cfg, dict) else {}


def _read_metrics(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path} is not valid JSON ({err})") from err
    return metrics if isinstance(metrics, dict) else None


@dataclass
class ExportResult:
    """What an export wrote: the folder, its files, notes for the reader and numerical checks."""

    format: str
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: dict[str, float] = field(default_factory=dict)  # e.g. ONNX vs PyTorch max abs difference

    def summary(self) -> str:
        lines = [f"exported {self.format} to {self.out_dir}:"]
        lines += [f"  {p.name}" for p in self.files]
        lines += [f"  check: {k} = {v:.3g}" for k, v in self.checks.items()]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return path


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class KeyExport:
    """An encoder's weights renamed for another library's model.

    ``state_dict``: the renamed tensors; ``builder``: the expression that builds the matching model
    without weights (``model = <builder>``); ``config``: what that library reads (timm's ``config.json``)
    or the builder's arguments; ``drop_head``: the statement that removes ``model``'s classifier, after
    which ``model(x)`` gives the encoder's ``"global"`` features (empty for a model built without one);
    ``head_keys``: the classifier's state-dict keys (the only ones the export lacks; empty when every key
    matches, ``strict=True``); ``mismatches``: what differs from the plain library
    model (empty when it matches exactly); ``patch``: Python lines that change ``model`` to match this
    encoder (needed exactly when there are mismatches).
    """

    library: str
    state_dict: dict[str, torch.Tensor]
    builder: str
    config: dict[str, Any]
    drop_head: str
    head_keys: list[str]
    mismatches: list[str] = field(default_factory=list)
    patch: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
