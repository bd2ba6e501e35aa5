"""``mmssl export RUN_DIR --format safetensors|timm|torchvision|onnx [--out DIR]``.

:func:`export_run` reads a finished run (``encoder.pt``, ``config.yaml``, ``metrics.json``) and writes,
into ``DIR`` (default ``RUN_DIR/export/<format>``), the encoder in one format plus ``MODEL_CARD.md``:

- ``safetensors``: ``model.safetensors`` + ``config.json`` (the registry spec); no pickle. Reloads with
  ``mmssl.encoders.load_encoder(DIR)``, or with ``safetensors.torch.load_file`` alone.
- ``timm`` / ``torchvision``: the weights under the library's key names (``model.safetensors``) and its
  config, for the ResNets and the image ViTs (and, for timm, the ``timm`` encoder: the timm model itself);
  checked by loading them into the library model and comparing pooled features with the encoder's
  ``global`` output. An encoder that differs from the library model (a CIFAR stem, a reduced-stride video
  ResNet) is refused with the exact differences, unless ``allow_mismatch``; the card then shows the code
  that patches the library model to match.
- ``onnx``: ``encoder.onnx`` of any registered encoder, checked with onnxruntime against PyTorch.

A cross-modal run trains more than one encoder (towers): ``encoder.pt`` and ``encoders/<key>.pt`` for
each extra tower, named by the item key it reads. Its export keeps that layout: the run's encoder in
``DIR`` itself, each extra tower in ``DIR/encoders/<key>/`` with its own ``config.json`` (naming the tower
under ``"tower"``; ``DIR/config.json`` maps every tower to its folder under ``"towers"``), each folder
loadable on its own exactly as a one-encoder export. safetensors and ONNX write every tower; timm and
torchvision write the towers they have a layout for and list the others, with the reason, in the notes
(the run's own encoder must be exportable). The card lists the towers.

Each format lives in its own module and is imported only when asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from mmssl.export.common import (
    FORMATS,
    ExportError,
    ExportResult,
    RunInfo,
    Tower,
    param_count,
    read_run,
    write_json,
)
from mmssl.export.model_card import TowerSection

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_run", "read_run"]

#: formats that export every encoder, hence every tower of a run
EVERY_ENCODER = ("safetensors", "onnx")


def export_command(run_dir: Path, fmt: str, out: Path, allow_mismatch: bool) -> str:
    return f"mmssl export {run_dir} --format {fmt} --out {out}" + (
        " --allow-mismatch" if allow_mismatch else ""
    )


def export_run(
    run_dir: str | Path, fmt: str, out: str | Path | None = None, *, allow_mismatch: bool = False
) -> ExportResult:
    """Export the encoder (every tower, for a cross-modal run) of the run at ``run_dir`` as ``fmt`` into
    ``out`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    info = read_run(run_dir)
    out_dir = Path(out) if out is not None else info.run_dir / "export" / fmt
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a directory")
    result = ExportResult(format=fmt, out_dir=out_dir)
    sections: list[TowerSection] = []
    for tower in info.towers:
        part = ExportResult(format=fmt, out_dir=out_dir / tower.folder)
        try:
            section = _export_tower(info, tower, fmt, part, allow_mismatch)
        except ExportError as err:
            if not info.crossmodal:
                raise
            where = f"tower '{tower.key}' ({tower.path.relative_to(info.run_dir)})"
            if tower is info.main or fmt in EVERY_ENCODER:
                raise ExportError(f"{where}: {err}") from err
            result.notes.append(f"{where} was not exported: {err}")
            continue
        # the run's encoder keeps the plain check names, an extra tower's are prefixed by its key
        label = "" if tower is info.main else f"{tower.key}."
        result.files += part.files
        result.checks.update({label + k: v for k, v in part.checks.items()})
        result.notes += [f"tower '{tower.key}': {n}" if info.crossmodal else n for n in part.notes]
        sections.append(section)
    if info.crossmodal:
        _record_towers(out_dir, sections)
    from mmssl.export.model_card import render_card, write_card

    command = export_command(info.run_dir, fmt, out_dir, allow_mismatch)
    card = render_card(info, fmt, command, result.files, sections, result.notes, result.checks)
    result.files.append(write_card(out_dir, card))
    return result


def _export_tower(
    info: RunInfo, tower: Tower, fmt: str, part: ExportResult, allow_mismatch: bool
) -> TowerSection:
    """Write one tower into ``part.out_dir``; its files, checks and notes go to ``part``."""
    encoder = tower.encoder()
    details: dict[str, Any] = {
        "modality": tower.modality or "unknown",
        "global feature size": getattr(encoder, "out_dim", "?"),
        "parameters": f"{param_count(encoder):,}",
    }
    extra = {"tower": tower.key} if info.crossmodal else {}
    if fmt == "safetensors":
        usage = _export_safetensors(tower, encoder, part, extra)
    elif fmt == "onnx":
        usage = _export_onnx(info, tower, encoder, part, details, extra)
    else:
        usage = _export_library(info, tower, encoder, fmt, part, allow_mismatch, extra)
    return TowerSection(tower=tower, folder=part.out_dir, details=details, usage=usage)


def _record_towers(out_dir: Path, sections: list[TowerSection]) -> None:
    """``"towers": {key: folder}`` in the run encoder's ``config.json``: where each exported tower is."""
    path = out_dir / "config.json"
    config = json.loads(path.read_text())
    config["towers"] = {s.tower.key: s.tower.folder or "." for s in sections}
    write_json(path, config)


def _export_safetensors(
    tower: Tower, encoder: nn.Module, part: ExportResult, extra: dict[str, Any]
) -> list[str]:
    from mmssl.export.safetensors import save_safetensors_encoder

    out_dir = part.out_dir
    extra = {"modality": tower.modality, "source": str(tower.path), **extra}
    part.files += save_safetensors_encoder(encoder, tower.spec, out_dir, extra)
    return [
        "```python",
        "from mmssl.encoders import load_encoder",
        f'encoder = load_encoder("{out_dir}")  # rebuilds `{tower.spec["name"]}` from config.json',
        'features = encoder(x)["global"]',
        "",
        "# without mmssl: the plain tensors",
        "from safetensors.torch import load_file",
        f'state_dict = load_file("{out_dir / "model.safetensors"}")',
        "```",
    ]


def _export_onnx(
    info: RunInfo,
    tower: Tower,
    encoder: nn.Module,
    part: ExportResult,
    details: dict[str, Any],
    extra: dict[str, Any],
) -> list[str]:
    from mmssl.export.onnx import write_onnx

    out_dir = part.out_dir
    files, checks, notes, record = write_onnx(
        encoder, tower.spec, tower.modality, info.data_options(), out_dir, extra
    )
    part.files += files
    part.checks.update(checks)
    part.notes += notes
    shape = [
        "B" if i == 0 and record["dynamic_batch"] else str(n) for i, n in enumerate(record["input"]["shape"])
    ]
    details["ONNX input"] = f"`input` [{', '.join(shape)}] {record['input']['dtype']}"
    details["ONNX outputs"] = ", ".join(f"`{k}`" for k in record["outputs"])
    details["ONNX opset"] = record["opset"]
    names = record["outputs"]
    return [
        "```python",
        "import onnxruntime as ort",
        f'session = ort.InferenceSession("{out_dir / "encoder.onnx"}")',
        f'outputs = dict(zip({names!r}, session.run({names!r}, {{"input": x.numpy()}})))',
        'features = outputs["global"]  # = the mmssl encoder\'s "global" output',
        "```",
        "",
        "The input is prepared as the run's data pipeline prepared it (the same normalisation); only the "
        "batch size may change" + ("." if record["dynamic_batch"] else " (here it is fixed too)."),
    ]


def _export_library(
    info: RunInfo,
    tower: Tower,
    encoder: nn.Module,
    fmt: str,
    part: ExportResult,
    allow_mismatch: bool,
    extra: dict[str, Any],
) -> list[str]:
    from mmssl.export.samples import example_input
    from mmssl.export.state_dicts import check_key_export, write_key_export

    out_dir, name = part.out_dir, tower.spec["name"]
    if fmt == "timm":
        from mmssl.export.timm_keys import to_timm

        export = to_timm(encoder, name)
    else:
        from mmssl.export.torchvision_keys import to_torchvision

        export = to_torchvision(encoder, name)
    if export.mismatches and not allow_mismatch:
        listed = "\n".join(f"  - {m}" for m in export.mismatches)
        raise ExportError(
            f"encoder '{name}' of {tower.path} differs from {fmt}'s model:\n{listed}\n"
            f"pass --allow-mismatch to write the weights under {fmt}'s key names anyway (the model card then "
            f"shows the lines that patch the {fmt} model to match)"
        )
    part.files += write_key_export(export, tower.spec, out_dir, extra)
    part.notes += [f"differs from the plain {fmt} model: {m}" for m in export.mismatches]
    try:
        # Frames, not clips: a video ResNet's "global" of [B, 3, H, W] is the library model's average pool.
        data = info.data_options()
        sample = example_input(
            encoder, "image", {"image_size": data.get("image_size") or data.get("frame_size")}
        )
        diff = check_key_export(export, encoder, sample)
    except ImportError as err:
        part.notes.append(f"{fmt} is not installed, the export was not checked ({err})")
    else:
        part.checks[f"{fmt}_features_max_abs_diff"] = diff
    weights = out_dir / "model.safetensors"
    import_line = "import timm" if fmt == "timm" else "import torchvision"
    lines = ["```python", "import torch", import_line, "from safetensors.torch import load_file", ""]
    lines.append(f"model = {export.builder}")
    if export.patch:
        lines += ["# make the model match this encoder (see Notes)", *export.patch]
    if export.head_keys:
        heads = ", ".join(map(repr, export.head_keys))
        lines += [
            f'missing, unexpected = model.load_state_dict(load_file("{weights}"), strict=False)',
            f"assert set(missing) <= {{{heads}}} and not unexpected  # the head",
        ]
    else:  # built without a classifier: every key matches
        lines.append(f'model.load_state_dict(load_file("{weights}"))  # strict: every key matches')
    if export.drop_head:
        lines.append(export.drop_head)
    lines += [
        'features = model(x)  # = the mmssl encoder\'s "global" output',
        "```",
    ]
    if fmt == "timm" and not export.patch:
        lines += [
            "",
            "or, offline, from this folder (config.json holds the timm arguments):",
            "",
            "```python",
            f'model = timm.create_model("local-dir:{out_dir}", pretrained=True)  # num_classes=0',
            "```",
        ]
    return lines
