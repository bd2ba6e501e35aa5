"""``mmssl export RUN_DIR --format safetensors|timm|torchvision|onnx [--out DIR]``.

:func:`export_run` reads a finished run (``encoder.pt``, ``config.yaml``, ``metrics.json``) and writes,
into ``DIR`` (default ``RUN_DIR/export/<format>``), the encoder in one format plus ``MODEL_CARD.md``:

- ``safetensors``: ``model.safetensors`` + ``config.json`` (the registry spec); no pickle. Reloads with
  ``mmssl.encoders.load_encoder(DIR)``, or with ``safetensors.torch.load_file`` alone.
- ``timm`` / ``torchvision``: the weights under the library's key names (``model.safetensors``) and its
  config, for the ResNets and the image ViTs; checked by loading them into the library model and comparing
  pooled features with the encoder's ``global`` output. An encoder that differs from the library model
  (a CIFAR stem, a reduced-stride video ResNet) is refused with the exact differences, unless
  ``allow_mismatch``; the card then shows the code that patches the library model to match.
- ``onnx``: ``encoder.onnx`` of any registered encoder, checked with onnxruntime against PyTorch.

Each format lives in its own module and is imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmssl.export.common import FORMATS, ExportError, ExportResult, RunInfo, param_count, read_run

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_run", "read_run"]


def export_command(run_dir: Path, fmt: str, out: Path, allow_mismatch: bool) -> str:
    return f"mmssl export {run_dir} --format {fmt} --out {out}" + (
        " --allow-mismatch" if allow_mismatch else ""
    )


def export_run(
    run_dir: str | Path, fmt: str, out: str | Path | None = None, *, allow_mismatch: bool = False
) -> ExportResult:
    """Export the encoder of the run at ``run_dir`` as ``fmt`` into ``out`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    info = read_run(run_dir)
    out_dir = Path(out) if out is not None else info.run_dir / "export" / fmt
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a directory")
    encoder = info.encoder()
    result = ExportResult(format=fmt, out_dir=out_dir)
    details: dict[str, Any] = {
        "modality": info.modality or "unknown",
        "global feature size": getattr(encoder, "out_dim", "?"),
        "parameters": f"{param_count(encoder):,}",
    }
    if fmt == "safetensors":
        usage = _export_safetensors(info, encoder, out_dir, result)
    elif fmt == "onnx":
        usage = _export_onnx(info, encoder, out_dir, result, details)
    else:
        usage = _export_library(info, encoder, fmt, out_dir, result, allow_mismatch)
    from mmssl.export.model_card import render_card, write_card

    command = export_command(info.run_dir, fmt, out_dir, allow_mismatch)
    card = render_card(info, fmt, command, result.files, usage, result.notes, result.checks, details)
    result.files.append(write_card(out_dir, card))
    return result


def _export_safetensors(info: RunInfo, encoder: Any, out_dir: Path, result: ExportResult) -> list[str]:
    from mmssl.export.safetensors import save_safetensors_encoder

    extra = {"modality": info.modality, "source": str(info.encoder_path)}
    result.files += save_safetensors_encoder(encoder, info.spec, out_dir, extra)
    return [
        "```python",
        "from mmssl.encoders import load_encoder",
        f'encoder = load_encoder("{out_dir}")  # rebuilds `{info.spec["name"]}` from config.json',
        'features = encoder(x)["global"]',
        "",
        "# without mmssl: the plain tensors",
        "from safetensors.torch import load_file",
        f'state_dict = load_file("{out_dir / "model.safetensors"}")',
        "```",
    ]


def _export_onnx(
    info: RunInfo, encoder: Any, out_dir: Path, result: ExportResult, details: dict[str, Any]
) -> list[str]:
    from mmssl.export.onnx import write_onnx

    files, checks, notes, record = write_onnx(encoder, info.spec, info.modality, info.data_options(), out_dir)
    result.files += files
    result.checks.update(checks)
    result.notes += notes
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
    info: RunInfo, encoder: Any, fmt: str, out_dir: Path, result: ExportResult, allow_mismatch: bool
) -> list[str]:
    from mmssl.export.samples import example_input
    from mmssl.export.state_dicts import check_key_export, write_key_export

    if fmt == "timm":
        from mmssl.export.timm_keys import to_timm

        export = to_timm(encoder, info.spec["name"])
    else:
        from mmssl.export.torchvision_keys import to_torchvision

        export = to_torchvision(encoder, info.spec["name"])
    if export.mismatches and not allow_mismatch:
        listed = "\n".join(f"  - {m}" for m in export.mismatches)
        raise ExportError(
            f"encoder '{info.spec['name']}' of {info.encoder_path} differs from {fmt}'s model:\n{listed}\n"
            f"pass --allow-mismatch to write the weights under {fmt}'s key names anyway (the model card then "
            f"shows the lines that patch the {fmt} model to match)"
        )
    result.files += write_key_export(export, info.spec, out_dir)
    result.notes += [f"differs from the plain {fmt} model: {m}" for m in export.mismatches]
    try:
        # Frames, not clips: a video ResNet's "global" of [B, 3, H, W] is the library model's average pool.
        data = info.data_options()
        sample = example_input(
            encoder, "image", {"image_size": data.get("image_size") or data.get("frame_size")}
        )
        diff = check_key_export(export, encoder, sample)
    except ImportError as err:
        result.notes.append(f"{fmt} is not installed, the export was not checked ({err})")
    else:
        result.checks[f"{fmt}_features_max_abs_diff"] = diff
    weights = out_dir / "model.safetensors"
    import_line = "import timm" if fmt == "timm" else "import torchvision"
    lines = ["```python", "import torch", import_line, "from safetensors.torch import load_file", ""]
    lines.append(f"model = {export.builder}")
    if export.patch:
        lines += ["# make the model match this encoder (see Notes)", *export.patch]
    lines += [
        f'missing, unexpected = model.load_state_dict(load_file("{weights}"), strict=False)',
        f"assert set(missing) <= {{{', '.join(map(repr, export.head_keys))}}} and not unexpected  # the head",
        export.drop_head,
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
