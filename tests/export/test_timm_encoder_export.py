"""``--format timm`` of the ``timm`` encoder: the inner timm model's own state dict (the wrapper's ``model.``
prefix stripped), which ``timm.create_model`` with the arguments recorded in config.json loads with
``strict=True`` in a process that never imports mmssl, and which gives the encoder's ``global`` output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmssl.export import ExportError, export_run
from tests.export._helpers import make_run

pytest.importorskip("timm")

TOL = 1e-5

# Only timm and the files: mmssl must not be needed (nor imported) to use the export.
WITHOUT_MMSSL = """
import json, sys
from pathlib import Path

import timm, torch
from safetensors.torch import load_file, save_file

features = {}
for folder in map(Path, sys.argv[2:]):
    config = json.loads((folder / "config.json").read_text())
    model = timm.create_model(
        config["architecture"], pretrained=False, num_classes=config["num_classes"], **config["model_args"]
    ).eval()
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    offline = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = load_file(str(folder.parent / "x.safetensors"))[folder.name]
    with torch.no_grad():
        features[folder.name] = model(x).contiguous()
        features[folder.name + "/local-dir"] = offline(x).contiguous()
assert not [m for m in sys.modules if m.split(".")[0] == "mmssl"], "mmssl was imported"
save_file(features, sys.argv[1])
"""

CASES = {
    "resnet10t": ({"model": "resnet10t"}, 64),
    "vit": (
        {"model": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4, "depth": 1, "global_pool": "avg"},
        32,
    ),
}


def test_timm_encoder_loads_into_timm_without_mmssl(tmp_path: Path) -> None:
    inputs, wanted, folders = {}, {}, []
    for label, (options, side) in CASES.items():
        run_dir, encoder = make_run(tmp_path / label, "timm", options, data={"image_size": side})
        folder = tmp_path / "out" / label
        result = export_run(run_dir, "timm", folder)
        assert result.checks["timm_features_max_abs_diff"] < TOL
        keys = set(load_file(str(folder / "model.safetensors")))
        assert keys == {k.removeprefix("model.") for k in encoder.state_dict()}  # nothing else renamed
        config = json.loads((folder / "config.json").read_text())
        assert config["architecture"] == options["model"] and config["num_classes"] == 0
        assert config["model_args"] == {"in_chans": 3, **{k: v for k, v in options.items() if k != "model"}}
        card = (folder / "MODEL_CARD.md").read_text()
        assert "# strict: every key matches" in card and f"local-dir:{folder}" in card
        inputs[label] = torch.randn(2, 3, side, side)
        with torch.no_grad():
            wanted[label] = encoder(inputs[label])["global"]
        folders.append(str(folder))
    save_file(inputs, str(tmp_path / "out" / "x.safetensors"))
    features = tmp_path / "features.safetensors"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MMSSL, str(features), *folders],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = load_file(str(features))
    for label, want in wanted.items():
        for key in (label, f"{label}/local-dir"):
            assert got[key].shape == want.shape
            assert float((got[key] - want).abs().max()) < TOL, key


def test_head_with_a_hidden_layer_is_a_mismatch_then_patched(tmp_path: Path) -> None:
    """``test_mambaout``'s head adds a 256-wide layer, so the encoder's ``global`` is the mean of its tokens:
    refused naming that, then written with the patch that makes timm's model compute the mean."""
    run_dir, _ = make_run(tmp_path, "timm", {"model": "test_mambaout"}, data={"image_size": 64})
    with pytest.raises(ExportError, match=r"global feature is the mean of its 64-wide tokens.*256-wide"):
        export_run(run_dir, "timm", tmp_path / "out")
    result = export_run(run_dir, "timm", tmp_path / "out", allow_mismatch=True)
    assert result.checks["timm_features_max_abs_diff"] < TOL
    assert "model.forward = mean_of_tokens" in (tmp_path / "out" / "MODEL_CARD.md").read_text()


def test_timm_encoder_to_torchvision_points_to_timm(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, "timm", {"model": "resnet10t"})
    with pytest.raises(
        ExportError, match=r"encoder 'timm' cannot be exported to torchvision: .*--format timm"
    ):
        export_run(run_dir, "torchvision", tmp_path / "out")
