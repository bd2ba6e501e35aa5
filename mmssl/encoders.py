"""Encoder files: a pretrained encoder saved alone, with the registry spec that rebuilds it.

``encoder.pt`` (and ``encoders/<key>.pt`` for the extra towers of a cross-modal run) hold
``{"format": "mmssl-encoder-v1", "name", "kwargs", "state_dict"}``: plain tensors and primitives, read with
``torch.load(..., weights_only=True)`` (:func:`~mmssl.safe_load.load_weights`: a file that would run code
is refused, naming it). :func:`load_encoder` also reads the encoder out of a training
checkpoint (``checkpoints/last.pt``, whose ``encoder_spec`` names it) and out of a safetensors export
(``mmssl export RUN_DIR --format safetensors``: a folder, or its ``model.safetensors``). Rebuilding goes
through the registry, so it imports only the module of that encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.options import builder_options
from mmssl.registry import ENCODERS
from mmssl.safe_load import load_weights
from mmssl.train.checkpoint import FORMAT, atomic_save

ENCODER_FORMAT = "mmssl-encoder-v1"


def build_encoder(name: str, options: dict[str, Any], where: str = "encoder") -> nn.Module:
    """The registered encoder ``name`` built with recipe ``options`` (checked and converted)."""
    builder = ENCODERS.get(name)
    return builder(**builder_options(builder, options, where, kind="encoder", name=name))


def save_encoder(encoder: nn.Module, spec: dict[str, Any], path: str | Path) -> None:
    """Save an encoder alone, with the registry name and options that rebuild it (atomically)."""
    atomic_save(
        {
            "format": ENCODER_FORMAT,
            "name": spec["name"],
            "kwargs": spec.get("kwargs", {}),
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
    encoder = build_encoder(spec["name"], dict(spec["kwargs"]), where=f"{path}: encoder")
    encoder.load_state_dict(state)
    return encoder
