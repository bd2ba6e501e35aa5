"""The encoder as ``model.safetensors`` + ``config.json``: no pickle anywhere.

``model.safetensors`` holds the encoder's ``state_dict`` (tensors that share storage, such as the tied
input/output embeddings of the text encoders, are stored once; the dropped names are listed in the
file's metadata, as ``safetensors.torch.save_model`` does). Its metadata also holds the registry spec
under ``mmssl_encoder`` (JSON), so the file alone is enough to rebuild the encoder. ``config.json``
repeats that spec in readable form::

    {"format": "mmssl-encoder-v1", "name": "small_cnn", "kwargs": {"stem_stride": 2}, ...}

Read it back with ``mmssl.encoders.load_encoder(folder)`` (or the ``.safetensors`` file), or without
mmssl with ``safetensors.torch.load_file(folder / "model.safetensors")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.export.common import ExportError, write_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SPEC_KEY = "mmssl_encoder"  # the metadata entry that holds the spec (JSON)


def save_safetensors_encoder(
    encoder: nn.Module, spec: dict[str, Any], folder: str | Path, extra: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``folder/model.safetensors`` and ``folder/config.json``; returns the two paths."""
    from safetensors.torch import save_model

    from mmssl.encoders import ENCODER_FORMAT

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": spec["name"], "kwargs": dict(spec.get("kwargs", {}))}
    weights = folder / WEIGHTS_NAME
    save_model(
        encoder,
        str(weights),
        metadata={"format": ENCODER_FORMAT, SPEC_KEY: json.dumps(spec)},
        force_contiguous=True,
    )
    config = {"format": ENCODER_FORMAT, **spec, "weights": WEIGHTS_NAME, **(extra or {})}
    return [weights, write_json(folder / CONFIG_NAME, config)]


def read_safetensors_spec(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(weights file, {"name", "kwargs"})`` of an exported folder or ``.safetensors`` file: the spec of
    ``config.json`` beside the weights, else the one in the file's metadata."""
    from safetensors import safe_open

    from mmssl.encoders import ENCODER_FORMAT

    path = Path(path)
    if path.is_dir():
        folder, weights = path, path / WEIGHTS_NAME
        config_path = folder / CONFIG_NAME
        if config_path.is_file():
            config = json.loads(config_path.read_text())
            weights = folder / config.get("weights", WEIGHTS_NAME)
    else:
        folder, weights = path.parent, path
    if not weights.is_file():
        raise ExportError(f"{weights} not found (an mmssl safetensors export holds {WEIGHTS_NAME})")
    config_path = folder / CONFIG_NAME
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        if config.get("format") == ENCODER_FORMAT and "name" in config:
            return weights, {"name": config["name"], "kwargs": dict(config.get("kwargs", {}))}
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata() or {}
    if SPEC_KEY not in metadata:
        raise ExportError(
            f"{weights} names no encoder: neither {config_path} nor the file's metadata key "
            f"'{SPEC_KEY}' holds an mmssl encoder spec"
        )
    spec = json.loads(metadata[SPEC_KEY])
    return weights, {"name": spec["name"], "kwargs": dict(spec.get("kwargs", {}))}


def load_safetensors_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the encoder of an export folder (or its ``model.safetensors``) through the registry."""
    from safetensors.torch import load_model

    from mmssl.encoders import build_encoder

    weights, spec = read_safetensors_spec(path)
    encoder = build_encoder(spec["name"], dict(spec["kwargs"]), where=f"{weights}: encoder")
    load_model(encoder, str(weights), strict=True, device=str(map_location))
    return encoder.to(map_location)
