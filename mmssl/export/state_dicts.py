"""Writing a renamed state dict (timm / torchvision) and checking it against the library's own model.

The check runs the very code the model card shows: build the library model (``builder``), apply the
``patch`` lines, load the weights with ``strict=False`` and require that only the classifier (``head_keys``)
is missing and nothing is unexpected, drop the head, and compare ``model(x)`` with the encoder's
``"global"`` output on a sample input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.export.common import ExportError, KeyExport, write_json

WEIGHTS_NAME = "model.safetensors"


def write_key_export(
    export: KeyExport, spec: dict[str, Any], folder: Path, extra: dict[str, Any] | None = None
) -> list[Path]:
    """``folder/model.safetensors`` (the renamed tensors) and ``folder/config.json`` (with ``extra``'s
    entries, e.g. the tower of a cross-modal run; the library reads only its own keys)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_NAME
    tensors = {k: v.detach().contiguous() for k, v in export.state_dict.items()}
    save_file(
        tensors,
        str(weights),
        metadata={
            "format": f"{export.library}-state-dict",
            "builder": export.builder,
            "mmssl_encoder": json.dumps({"name": spec["name"], "kwargs": spec.get("kwargs", {})}),
        },
    )
    config = {**export.config, **(extra or {})}
    config["mmssl"] = {
        "encoder": {"name": spec["name"], "kwargs": spec.get("kwargs", {})},
        "builder": export.builder,
        "mismatches": export.mismatches,
        "patch": export.patch,
    }
    return [weights, write_json(folder / "config.json", config)]


def build_library_model(export: KeyExport) -> nn.Module:
    """The library model of ``export`` (no weights), with the ``patch`` lines applied."""
    namespace: dict[str, Any] = {"torch": torch}
    if export.library == "timm":
        import timm

        namespace["timm"] = timm
    else:
        import torchvision

        namespace["torchvision"] = torchvision
    exec(f"model = {export.builder}", namespace)
    if export.patch:
        exec("\n".join(export.patch), namespace)
    return namespace["model"]


def check_key_export(export: KeyExport, encoder: nn.Module, sample: torch.Tensor) -> float:
    """Max ``|model(x) - encoder(x)["global"]|`` of the patched library model loaded with the export.

    Raises :class:`ExportError` when a key other than the classifier's is missing or unexpected."""
    model = build_library_model(export).eval()
    missing, unexpected = model.load_state_dict(export.state_dict, strict=False)
    extra_missing = sorted(set(missing) - set(export.head_keys))
    if extra_missing or unexpected:
        raise ExportError(
            f"the {export.library} model ({export.builder}) does not take the exported keys: "
            f"missing {extra_missing[:10]}, unexpected {sorted(unexpected)[:10]}"
        )
    if export.drop_head:
        exec(export.drop_head, {"model": model, "torch": torch})
    with torch.no_grad():
        got = model(sample)
        want = encoder.eval()(sample)["global"]
    if got.shape != want.shape:
        raise ExportError(
            f"the {export.library} model's features have shape {tuple(got.shape)}, the encoder's "
            f"{tuple(want.shape)}"
        )
    return float((got - want).abs().max())
