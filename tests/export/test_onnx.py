"""``--format onnx``: one small encoder per modality exported with the dynamo exporter and run by
onnxruntime against PyTorch (max abs diff), with a dynamic batch; ``texture_stats`` cannot be exported
(a data-dependent branch per clip) and says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mmssl.export import ExportError, export_run
from mmssl.export.samples import example_input
from tests.export._helpers import make_run

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-4  # float32 kernels of two runtimes: ~1e-6 here, up to ~2e-5 for ResNets

FAST = [
    ("image", "small_cnn", {"widths": [8, 16], "stem_stride": 2}, {"image_size": 32}),
    ("video", "video_cnn", {"widths": [8, 16]}, {"frame_size": 32, "clip_len": 2}),
    ("audio", "audio_cnn", {"sample_rate": 8000, "n_mels": 32, "widths": [8, 16]}, {"clip_seconds": 0.5}),
    (
        "pointcloud",
        "dgcnn",
        {"k": 8, "edge_dims": [16, 16], "global_dim": 32, "point_dims": [32, 16]},
        {"num_points": 128},
    ),
    (
        "text",
        "bert_small",
        {"vocab_size": 64, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
        {"eval_length": 16},
    ),
]
SLOW = [
    ("image", "vit_tiny", {"depth": 2}, {"image_size": 32}),
    ("image", "resnet18", {"small_stem": True}, {"image_size": 32}),
    ("image", "wide_resnet", {"depth": 10, "widen_factor": 1}, {"image_size": 32}),
    (
        "video",
        "video_vit",
        {"img_size": 32, "num_frames": 4, "embed_dim": 48, "depth": 1, "num_heads": 2},
        {},
    ),
    ("video", "video_resnet18", {"out_layer": "layer3"}, {"frame_size": 32, "clip_len": 2}),
    (
        "audio",
        "audio_vit",
        {"sample_rate": 8000, "n_mels": 32, "embed_dim": 32, "depth": 1, "num_heads": 2},
        {},
    ),
    (
        "pointcloud",
        "pointnet2",
        {
            "num_centres": [32, 8],
            "radii": [0.2, 0.4],
            "num_samples": [8, 8],
            "sa_dims": [[16], [32]],
            "global_dims": [32],
            "fp_dims": [[32], [16], [16]],
        },
        {"num_points": 128},
    ),
    (
        "pointcloud",
        "point_transformer",
        {
            "num_groups": 8,
            "group_size": 8,
            "embed_dim": 32,
            "depth": 1,
            "num_heads": 2,
            "embed_dims": [16, 16, 32],
            "pos_hidden": 16,
        },
        {"num_points": 128},
    ),
    (
        "text",
        "gpt2_small",
        {"vocab_size": 64, "hidden_size": 16, "num_layers": 1, "num_heads": 2},
        {"eval_length": 16},
    ),
]


def check_onnx(
    tmp_path: Path, modality: str, name: str, kwargs: dict[str, Any], data: dict[str, Any]
) -> None:
    run_dir, encoder = make_run(tmp_path, name, kwargs, modality=modality, data=data)
    result = export_run(run_dir, "onnx", tmp_path / "out")
    assert result.checks["onnx_max_abs_diff"] < TOL, result.checks
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["dynamic_batch"] is True
    assert set(config["onnxruntime_max_abs_diff"]) == set(config["outputs"]) >= {"global"}

    # Independently: another batch size through the dynamic batch dimension.
    x = example_input(encoder, modality, data, batch=3)
    session = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(["global"], {"input": x.numpy()})
    with torch.no_grad():
        want = encoder(x)["global"]
    assert float((torch.from_numpy(got) - want).abs().max()) < TOL
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert "onnx_max_abs_diff" in card and "ort.InferenceSession" in card


@pytest.mark.parametrize(("modality", "name", "kwargs", "data"), FAST, ids=[c[1] for c in FAST])
def test_onnx_matches_pytorch(tmp_path: Path, modality: str, name: str, kwargs: dict, data: dict) -> None:
    check_onnx(tmp_path, modality, name, kwargs, data)


@pytest.mark.slow
@pytest.mark.parametrize(("modality", "name", "kwargs", "data"), SLOW, ids=[c[1] for c in SLOW])
def test_onnx_matches_pytorch_more_encoders(
    tmp_path: Path, modality: str, name: str, kwargs: dict, data: dict
) -> None:
    check_onnx(tmp_path, modality, name, kwargs, data)


def test_texture_stats_is_not_exportable(tmp_path: Path) -> None:
    """No parameters and a Python loop over clips with a data-dependent branch (``if`` on a silent clip)."""
    run_dir, _ = make_run(
        tmp_path, "texture_stats", {"sample_rate": 8000}, modality="audio", data={"clip_seconds": 0.25}
    )
    with pytest.raises(
        ExportError, match=r"'texture_stats' \(audio\) could not be exported to ONNX: .*data-dependent"
    ) as err:
        export_run(run_dir, "onnx", tmp_path / "out")
    assert "texture_encoder.py" in str(err.value)


def test_unknown_modality_has_no_sample(tmp_path: Path) -> None:
    encoder = torch.nn.Identity()
    with pytest.raises(ExportError, match=r"no sample input is known for modality 'tabular'"):
        example_input(encoder, "tabular", {})


class _InverseDistance(torch.nn.Module):
    """PointNet++'s feature propagation weights on its own: ``1 / (d^2 + 1e-8)`` with ``d = 0`` for a
    point that is a centre."""

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        from mmssl.modalities.pointcloud.encoders import interpolate_features

        centres = points[:, :8]
        return {"global": interpolate_features(points, centres, centres * 2.0)}


def test_small_constants_survive_the_export(tmp_path: Path) -> None:
    """onnxscript's optimiser folds ``x + 1e-8`` to ``x`` (NaN weights at d = 0); the export keeps it."""
    from mmssl.export.onnx import export_onnx, onnxruntime_max_abs_diff

    model = _InverseDistance()
    x = torch.randn(2, 32, 3)
    keys, _ = export_onnx(model, x, tmp_path / "m.onnx")
    diffs = onnxruntime_max_abs_diff(tmp_path / "m.onnx", model, x, keys)
    assert diffs["global"] < TOL
