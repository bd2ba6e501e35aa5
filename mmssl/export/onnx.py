"""Any registered encoder as ``encoder.onnx``, checked against PyTorch with onnxruntime.

The graph is exported with ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` then the ONNX
translation) on a sample input of the run's modality and sizes (:func:`example_input`), with the batch
dimension dynamic. Its outputs are the encoder's tensor outputs, named as in its output dict (``global``,
``tokens``, ...; a video encoder's ``grid`` is a pair of ints, recorded in ``config.json`` instead).

The onnxscript graph optimiser is turned off: it rewrites ``x + c`` to ``x`` whenever ``|c| <= 1e-8``
(its constant matching uses ``math.isclose(..., abs_tol=1e-8)``), which drops the ``+ 1e-8`` of
PointNet++'s inverse-distance weights and turns them into NaN where a point coincides with a centre.
onnxruntime optimises the graph when it loads it anyway.

After export, onnxruntime (when installed) runs the file on the sample input; the largest absolute
difference from PyTorch over all outputs is reported and stored in ``config.json``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.export.common import ExportError, write_json
from mmssl.export.samples import example_input

ONNX_NAME = "encoder.onnx"
EXTERNAL_DATA_BYTES = 1_500_000_000  # above this the weights go to encoder.onnx.data (protobuf's 2 GB cap)


class TensorOutputs(nn.Module):
    """The encoder with its dict output flattened to the tuple of its tensor entries (``keys``)."""

    def __init__(self, encoder: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.encoder, self.keys = encoder, keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.encoder(x)
        return tuple(out[k] for k in self.keys)


def _quiet_export(fn: Any) -> Any:
    """Run ``fn()`` with the exporter's progress prints, warnings and logs silenced."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        _logging_disabled(),
    ):
        warnings.simplefilter("ignore")
        return fn()


@contextlib.contextmanager
def _logging_disabled() -> Any:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _first_line_of(err: BaseException) -> str:
    """The informative part of an exporter error: its summary line and the mmssl code it points at."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    summary = next((ln for ln in lines if ln.startswith("<class")), lines[0] if lines else type(err).__name__)
    where = [i for i, ln in enumerate(lines) if ln.startswith('File "') and "mmssl" in ln]
    if not where:
        return summary[:500]
    i = where[-1]
    code = f" ({lines[i + 1]})" if i + 1 < len(lines) else ""
    return f"{summary[:500]} at {lines[i]}{code}"


def export_onnx(
    encoder: nn.Module, sample: torch.Tensor, path: str | Path, dynamic_batch: bool = True
) -> tuple[list[str], dict[str, Any]]:
    """Write ``path`` (and ``path.data`` for very large weights); returns the output names and a record
    of the export (opset, dynamic batch, input)."""
    import onnx

    path = Path(path)
    encoder = encoder.eval()
    with torch.no_grad():
        reference = encoder(sample)
    keys = [k for k, v in reference.items() if isinstance(v, torch.Tensor)]
    wrapper = TensorOutputs(encoder, keys).eval()
    large = sum(p.numel() * p.element_size() for p in encoder.parameters()) > EXTERNAL_DATA_BYTES

    def run(dynamic: bool) -> None:
        shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (sample,),
                str(path),
                input_names=["input"],
                output_names=keys,
                dynamo=True,
                dynamic_shapes=shapes,
                optimize=False,  # see the module docstring
                external_data=large,
                verbose=False,
            )

    try:
        _quiet_export(lambda: run(dynamic_batch))
        dynamic = dynamic_batch
    except Exception as first:  # the exporter raises many error types
        if not dynamic_batch:
            raise ExportError(f"torch.onnx.export failed: {_first_line_of(first)}") from first
        try:  # some graphs only export with every size fixed
            _quiet_export(lambda: run(False))
            dynamic = False
        except Exception as err:
            raise ExportError(f"torch.onnx.export failed: {_first_line_of(err)}") from err
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    record = {
        "input": {
            "name": "input",
            "shape": list(sample.shape),
            "dtype": str(sample.dtype).replace("torch.", ""),
        },
        "outputs": keys,
        "dynamic_batch": dynamic,
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
    }
    grid = reference.get("grid")
    if isinstance(grid, tuple):
        record["grid"] = [int(v) for v in grid]
    return keys, record


def onnxruntime_max_abs_diff(
    path: str | Path, encoder: nn.Module, sample: torch.Tensor, keys: list[str]
) -> dict[str, float]:
    """Largest ``|onnxruntime - PyTorch|`` per output on ``sample``; raises ImportError without
    onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = session.run(keys, {session.get_inputs()[0].name: sample.numpy()})
    with torch.no_grad():
        reference = encoder.eval()(sample)
    diffs = {}
    for key, value in zip(keys, results):
        got = torch.from_numpy(value)
        want = reference[key].detach().to(got.dtype)
        if got.shape != want.shape:
            raise ExportError(
                f"ONNX output '{key}' has shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}"
            )
        diff = (got - want).abs().max().item() if got.numel() else 0.0
        diffs[key] = float("inf") if diff != diff else float(diff)  # NaN counts as a failure
    return diffs


def write_onnx(
    encoder: nn.Module,
    spec: dict[str, Any],
    modality: str | None,
    data: dict[str, Any],
    folder: str | Path,
    extra: dict[str, Any] | None = None,
) -> tuple[list[Path], dict[str, float], list[str], dict[str, Any]]:
    """``folder/encoder.onnx`` + ``config.json`` (with ``extra``'s entries, e.g. the tower of a cross-modal
    run); returns (files, checks, notes, record)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sample = example_input(encoder, modality, data)
    path = folder / ONNX_NAME
    try:
        keys, record = export_onnx(encoder, sample, path)
    except ExportError as err:
        raise ExportError(
            f"encoder '{spec['name']}' ({modality}) could not be exported to ONNX: {err}"
        ) from err
    files = [path] + (
        [path.with_name(path.name + ".data")] if path.with_name(path.name + ".data").exists() else []
    )
    notes: list[str] = []
    checks: dict[str, float] = {}
    if not record["dynamic_batch"]:
        notes.append(f"the batch size is fixed at {sample.shape[0]} (a dynamic batch did not export)")
    try:
        diffs = onnxruntime_max_abs_diff(path, encoder, sample, keys)
    except ImportError:
        notes.append(
            "onnxruntime is not installed: the ONNX file was not checked (pip install 'mmssl[onnx]')"
        )
    else:
        checks = {"onnx_max_abs_diff": max(diffs.values())}
        record["onnxruntime_max_abs_diff"] = diffs
    config = {
        "name": spec["name"],
        "kwargs": spec.get("kwargs", {}),
        "modality": modality,
        **(extra or {}),
        **record,
    }
    files.append(write_json(folder / "config.json", config))
    return files, checks, notes, record
