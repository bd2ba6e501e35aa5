"""Encoder files: a pretrained encoder saved alone, with the registry spec that rebuilds it.

``encoder.pt`` (and ``encoders/<key>.pt`` for the extra towers of a cross-modal run) hold
``{"format": "mmssl-encoder-v1", "name", "kwargs", "state_dict"}``: plain tensors and primitives, read with
``torch.load(..., weights_only=True)`` (:func:`~mmssl.safe_load.load_weights`: a file that would run code
is refused, naming it). :func:`load_encoder` also reads the encoder out of a training
checkpoint (``checkpoints/last.pt``, whose ``encoder_spec`` names it) and out of a safetensors export
(``mmssl export RUN_DIR --format safetensors``: a folder, or its ``model.safetensors``). Rebuilding goes
through the registry, so it imports only the module of that encoder.

Every encoder section also takes ``weights: PATH``, initial weights from a local file, loaded by
:func:`build_encoder` once the encoder is built (:func:`load_initial_weights`): a ``.safetensors`` file, a
plain state dict (``torch.save(model.state_dict(), ...)``, read weights-only), an mmssl ``encoder.pt`` or
training checkpoint, or a safetensors export folder. The saved spec of a trained encoder leaves the key
out (its own weights replace the initial ones, and the file need not travel with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.errors import ConfigError
from mmssl.options import builder_options
from mmssl.registry import ENCODERS
from mmssl.safe_load import load_weights
from mmssl.train.checkpoint import FORMAT, atomic_save

ENCODER_FORMAT = "mmssl-encoder-v1"


#: the option every encoder section takes, handled here rather than by the builders
WEIGHTS_KEY = "weights"
#: how many missing / unexpected keys an error lists
SHOWN_KEYS = 8


def build_encoder(name: str, options: dict[str, Any], where: str = "encoder") -> nn.Module:
    """The registered encoder ``name`` built with recipe ``options`` (checked and converted); with
    ``weights: PATH`` among them, its initial weights are loaded from that file."""
    builder = ENCODERS.get(name)
    kwargs = builder_options(builder, options, where, kind="encoder", name=name)
    weights = kwargs.pop(WEIGHTS_KEY, None)
    encoder = builder(**kwargs)
    if weights is not None:
        load_initial_weights(encoder, weights, where=f"{where}.{WEIGHTS_KEY}", name=name)
    return encoder


def _tensors_only(state: Mapping[str, Any]) -> bool:
    return bool(state) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


def read_state_dict(path: str | Path, where: str = f"encoder.{WEIGHTS_KEY}") -> dict[str, torch.Tensor]:
    """The encoder state dict held by ``path`` (see the module docstring for the formats read)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"'{where}': no such file or folder: {path}")
    if path.is_dir():
        if (path / "encoder.pt").is_file():
            path = path / "encoder.pt"
        else:
            from mmssl.export.safetensors import WEIGHTS_NAME, read_safetensors_spec

            try:
                path, _ = read_safetensors_spec(path)
            except Exception as err:  # no weights file in the folder, a config.json that is not JSON ...
                raise ConfigError(
                    f"'{where}': {path} is a folder without encoder.pt or {WEIGHTS_NAME} ({err})"
                ) from None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # a header that is not safetensors, a file cut short ...
            raise ConfigError(f"'{where}': {path} is not a readable safetensors file ({err})") from None
    raw = load_weights(path)  # weights only: a file that would run code is refused, named
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        state = {k[len("encoder.") :]: v for k, v in raw["model"].items() if k.startswith("encoder.")}
    elif isinstance(raw, dict) and raw.get("format") == ENCODER_FORMAT:
        state = raw["state_dict"]
    elif isinstance(raw, dict) and isinstance(raw.get("state_dict"), Mapping):
        state = raw["state_dict"]
    else:
        state = raw
    if not isinstance(state, Mapping) or not _tensors_only(state):
        raise ConfigError(
            f"'{where}': {path} holds no state dict (a mapping of parameter names to tensors), "
            f"got {type(state).__name__}"
        )
    return dict(state)


def load_initial_weights(
    encoder: nn.Module, path: str | Path, where: str = f"encoder.{WEIGHTS_KEY}", name: str = "encoder"
) -> None:
    """Load the state dict of ``path`` into ``encoder`` strictly: a key missing on either side or a shape
    that differs is a :class:`ConfigError` naming ``where``, the file and the first offending keys. An
    encoder may define ``adapt_initial_weights(state) -> state`` to rename or resize a foreign state dict
    first (the timm encoder accepts a bare timm state dict; the ViTs resample a position table trained at
    another image size); a ``ValueError`` it raises is reported like a mismatch, naming ``where``."""
    state = read_state_dict(path, where)
    adapt = getattr(encoder, "adapt_initial_weights", None)
    if callable(adapt):
        try:
            state = adapt(state)
        except ValueError as err:
            raise ConfigError(f"'{where}': {path} does not match encoder '{name}': {err}") from None
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shapes (file vs encoder)", reshaped),
    ):
        if keys:
            more = f", ... ({len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
            problems.append(f"{label} ({len(keys)}): {', '.join(keys[:SHOWN_KEYS])}{more}")
    if problems:
        raise ConfigError(f"'{where}': {path} does not match encoder '{name}': " + "; ".join(problems))
    encoder.load_state_dict(state, strict=True)


def save_encoder(encoder: nn.Module, spec: dict[str, Any], path: str | Path) -> None:
    """Save an encoder alone, with the registry name and options that rebuild it (atomically)."""
    atomic_save(
        {
            "format": ENCODER_FORMAT,
            "name": spec["name"],
            "kwargs": {k: v for k, v in spec.get("kwargs", {}).items() if k != WEIGHTS_KEY},
            "state_dict": encoder.state_dict(),
        },
        path,
    )


def load_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a pretrained encoder from ``encoder.pt`` (or a training checkpoint, or a safetensors export
    folder / ``.safetensors`` file) for downstream use.

    >>> encoder = load_encoder("runs/quickstart/encoder.pt")
    >>> features = encoder(images)["global"]
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        from mmssl.export.safetensors import load_safetensors_encoder

        return load_safetensors_encoder(path, map_location)
    raw = load_weights(path, map_location)  # weights only: a file that would run code is refused, named
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        spec = raw["encoder_spec"]
        state = {k[len("encoder.") :]: v for k, v in raw["model"].items() if k.startswith("encoder.")}
    elif isinstance(raw, dict) and raw.get("format") == ENCODER_FORMAT:
        spec, state = {"name": raw["name"], "kwargs": raw["kwargs"]}, raw["state_dict"]
    else:
        raise ValueError(f"{path} is neither an mmssl encoder file nor an mmssl checkpoint")
    kwargs = {k: v for k, v in spec["kwargs"].items() if k != WEIGHTS_KEY}  # its own weights follow
    encoder = build_encoder(spec["name"], kwargs, where=f"{path}: encoder")
    encoder.load_state_dict(state)
    return encoder
