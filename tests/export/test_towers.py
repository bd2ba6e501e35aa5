"""Exporting a cross-modal run: every tower (``encoder.pt`` and ``encoders/<key>.pt``) is written, the run's
encoder in the export folder itself and each extra tower in ``encoders/<key>/``, each with a config.json
naming it; safetensors reloads every tower exactly, ONNX checks every tower with onnxruntime, timm /
torchvision write the towers they have a layout for and name the others; the card lists the towers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmssl.encoders import load_encoder
from mmssl.export import ExportError, export_run
from mmssl.export.samples import example_input
from tests.export._helpers import make_towers_run

TOL = 1e-4


@pytest.fixture(scope="module")
def crossmodal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3-step cross-modal run (image and 1-channel 'audio' towers, both small CNNs)."""
    from mmssl import pipeline
    from mmssl.config import from_dict
    from tests.crossmodal.test_pipeline_run import RECIPE  # registers its tiny paired dataset

    run_dir = tmp_path_factory.mktemp("crossmodal") / "run"
    pipeline.train(from_dict({**RECIPE, "eval": {}, "out_dir": str(run_dir)}))
    assert (run_dir / "encoder.pt").is_file() and (run_dir / "encoders" / "audio.pt").is_file()
    return run_dir


def test_safetensors_round_trips_every_tower(crossmodal_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = export_run(crossmodal_run, "safetensors", out)
    written = {str(p.relative_to(out)) for p in result.files}
    assert written == {
        "model.safetensors",
        "config.json",
        "encoders/audio/model.safetensors",
        "encoders/audio/config.json",
        "MODEL_CARD.md",
    }
    root = json.loads((out / "config.json").read_text())
    assert root["tower"] == "image" and root["towers"] == {"image": ".", "audio": "encoders/audio"}
    audio = json.loads((out / "encoders" / "audio" / "config.json").read_text())
    assert audio["tower"] == "audio" and audio["name"] == "small_cnn" and audio["kwargs"]["in_channels"] == 1

    inputs = {"image": torch.randn(3, 3, 32, 32), "audio": torch.randn(3, 1, 8, 8)}
    sources = {"image": crossmodal_run / "encoder.pt", "audio": crossmodal_run / "encoders" / "audio.pt"}
    with torch.no_grad():
        for key, folder in root["towers"].items():
            x = inputs[key]
            want = load_encoder(sources[key]).eval()(x)
            got = load_encoder(out / folder).eval()(x)
            for name in ("global", "tokens"):
                torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)

    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# crossmodal_tiny: crossmodal_contrastive-pretrained towers image `small_cnn`")
    assert "## Towers" in card
    assert "| `image` (the run's encoder) | `small_cnn` |" in card
    assert '| `audio` | `small_cnn` | `{"widths": [4, 8], "in_channels": 1}` |' in card
    assert "`encoders/audio/model.safetensors`" in card
    assert f'load_encoder("{out / "encoders" / "audio"}")' in card


def test_onnx_checks_every_tower_with_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    audio_kwargs = {"sample_rate": 8000, "n_mels": 32, "widths": [8, 16]}
    data = {"image_size": 32, "clip_seconds": 0.5}
    run_dir, towers = make_towers_run(
        tmp_path,
        ("small_cnn", {"widths": [8, 16], "stem_stride": 2}),
        {"audio": ("audio_cnn", audio_kwargs)},
        data=data,
    )
    out = tmp_path / "out"
    result = export_run(run_dir, "onnx", out)
    assert result.checks["onnx_max_abs_diff"] < TOL and result.checks["audio.onnx_max_abs_diff"] < TOL
    modalities = {"image": "image", "audio": "audio"}
    for key, folder in {"image": out, "audio": out / "encoders" / "audio"}.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["tower"] == key and config["modality"] == modalities[key]
        # independently of the export's own check: another batch size, onnxruntime against PyTorch
        x = example_input(towers[key], modalities[key], data, batch=3)
        session = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
        (got,) = session.run(["global"], {"input": x.numpy()})
        with torch.no_grad():
            want = towers[key](x)["global"]
        assert float((torch.from_numpy(got) - want).abs().max()) < TOL, key
    card = (out / "MODEL_CARD.md").read_text()
    assert "| `audio` | `audio_cnn` |" in card and "audio.onnx_max_abs_diff" in card
    assert f'ort.InferenceSession("{out / "encoders" / "audio" / "encoder.onnx"}")' in card


def test_library_formats_write_the_towers_they_can(tmp_path: Path) -> None:
    """timm takes both towers (a 1-channel ViT is ``in_chans=1``); torchvision's ViT always takes 3
    channels, so that tower is left out, named with the reason, and the run's ResNet is still written."""
    timm = pytest.importorskip("timm")
    depth_kwargs = {"depth": 1, "in_channels": 1, "pos_embed": "learned"}
    run_dir, towers = make_towers_run(
        tmp_path, ("resnet18", {}), {"depth": ("vit_tiny", depth_kwargs)}, data={"image_size": 32}
    )
    result = export_run(run_dir, "timm", tmp_path / "timm")
    assert result.checks["timm_features_max_abs_diff"] < 1e-5
    assert result.checks["depth.timm_features_max_abs_diff"] < 1e-5
    folder = tmp_path / "timm" / "encoders" / "depth"
    assert json.loads((folder / "config.json").read_text())["tower"] == "depth"
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert float((model(x) - towers["depth"](x)["global"]).abs().max()) < 1e-5

    result = export_run(run_dir, "torchvision", tmp_path / "tv")
    assert (tmp_path / "tv" / "model.safetensors").is_file()
    assert not (tmp_path / "tv" / "encoders").exists()
    (note,) = [n for n in result.notes if "depth" in n]
    assert note.startswith("tower 'depth' (encoders/depth.pt) was not exported: encoder 'vit_tiny'")
    assert "1 input channels" in note and "--allow-mismatch" in note
    card = (tmp_path / "tv" / "MODEL_CARD.md").read_text()
    assert "| `depth` | `vit_tiny` |" in card and "not exported (see Notes)" in card
    assert json.loads((tmp_path / "tv" / "config.json").read_text())["towers"] == {"image": "."}


def test_a_run_encoder_without_a_layout_is_refused_naming_its_tower(tmp_path: Path) -> None:
    run_dir, _ = make_towers_run(
        tmp_path, ("small_cnn", {"widths": [4]}), {"audio": ("audio_cnn", {"widths": [4]})}
    )
    with pytest.raises(
        ExportError, match=r"tower 'image' \(encoder\.pt\): encoder 'small_cnn' cannot be exported to timm"
    ):
        export_run(run_dir, "timm", tmp_path / "out")
