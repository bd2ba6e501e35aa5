"""``--format timm`` / ``--format torchvision``: the exported keys load into the libraries' own models with
only the classifier missing, and give the encoder's ``global`` features (max abs diff < 1e-5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from mmssl.export import ExportError, export_run
from mmssl.export.state_dicts import build_library_model
from mmssl.export.timm_keys import to_timm
from mmssl.export.torchvision_keys import to_torchvision
from tests.export._helpers import make_run

timm = pytest.importorskip("timm")

TOL = 1e-5


def load_only_head_missing(model: torch.nn.Module, path: Path, head: set[str]) -> None:
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    assert set(missing) == head, sorted(missing)
    assert unexpected == []


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_loads_into_torchvision_and_timm(tmp_path: Path, name: str) -> None:
    run_dir, encoder = make_run(tmp_path, name, {})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = encoder(x)["global"]
    export_run(run_dir, "torchvision", tmp_path / "tv")
    tv = getattr(torchvision.models, name)(weights=None).eval()
    load_only_head_missing(tv, tmp_path / "tv" / "model.safetensors", {"fc.weight", "fc.bias"})
    tv.fc = torch.nn.Identity()
    export_run(run_dir, "timm", tmp_path / "timm")
    tm = timm.create_model(name, pretrained=False).eval()
    load_only_head_missing(tm, tmp_path / "timm" / "model.safetensors", {"fc.weight", "fc.bias"})
    tm.reset_classifier(0)
    with torch.no_grad():
        assert max_diff(tv(x), want) < TOL
        assert max_diff(tm(x), want) < TOL


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_loads_into_timm(tmp_path: Path, pool: str) -> None:
    kwargs = {"depth": 2, "global_pool": pool, "pos_embed": "learned" if pool == "mean" else "sincos"}
    run_dir, encoder = make_run(tmp_path, "vit_tiny", kwargs)
    result = export_run(run_dir, "timm", tmp_path / "timm")
    assert result.checks["timm_features_max_abs_diff"] < TOL
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=4,
        depth=2,
        global_pool="token" if pool == "cls" else "avg",
        fc_norm=False,
    ).eval()
    load_only_head_missing(model, tmp_path / "timm" / "model.safetensors", {"head.weight", "head.bias"})
    model.reset_classifier(0)
    offline = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()  # config.json
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = encoder(x)["global"]
        assert max_diff(model(x), want) < TOL
        assert max_diff(offline(x), want) < TOL


def test_vit_loads_into_torchvision(tmp_path: Path) -> None:
    run_dir, encoder = make_run(tmp_path, "vit_tiny", {"depth": 2})
    export_run(run_dir, "torchvision", tmp_path / "tv")
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=2, num_heads=3, hidden_dim=192, mlp_dim=768
    ).eval()
    load_only_head_missing(
        model, tmp_path / "tv" / "model.safetensors", {"heads.head.weight", "heads.head.bias"}
    )
    model.heads = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(model(x), encoder(x)["global"]) < TOL


@pytest.mark.parametrize(
    ("name", "kwargs", "library", "message"),
    [
        (
            "resnet18",
            {"small_stem": True},
            "torchvision",
            r"conv1\.weight has shape \(64, 3, 3, 3\) \(the CIFAR stem.*\(64, 3, 7, 7\).*max-pool",
        ),
        ("resnet18", {"small_stem": True}, "timm", r"conv1\.weight has shape \(64, 3, 3, 3\)"),
        ("resnet18", {"in_channels": 1}, "torchvision", r"conv1\.weight has shape \(64, 1, 7, 7\)"),
        ("video_resnet18", {}, "torchvision", r"layer3 and layer4 keep stride 1"),
        ("video_resnet18", {"out_layer": "layer3"}, "timm", r"stops after layer3"),
        ("vit_tiny", {"depth": 1, "global_pool": "mean"}, "torchvision", r"global_pool='mean'"),
    ],
    ids=[
        "cifar-stem-torchvision",
        "cifar-stem-timm",
        "1-channel-torchvision",
        "video-strides",
        "video-layer3",
        "vit-mean-pool",
    ],
)
def test_mismatch_is_refused_then_patched(
    tmp_path: Path, name: str, kwargs: dict[str, Any], library: str, message: str
) -> None:
    """A model that differs from the library's is refused, naming the difference; with allow_mismatch the
    weights are written and the card's patch lines make the library model compute the same features."""
    modality = "video" if name.startswith("video") else "image"
    run_dir, encoder = make_run(tmp_path, name, kwargs, modality=modality, data={"frame_size": 32})
    with pytest.raises(ExportError, match=message) as err:
        export_run(run_dir, library, tmp_path / "out")
    assert "--allow-mismatch" in str(err.value)
    result = export_run(run_dir, library, tmp_path / "out", allow_mismatch=True)
    assert result.checks[f"{library}_features_max_abs_diff"] < TOL
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    export = (to_timm if library == "timm" else to_torchvision)(encoder, name)
    assert all(line in card for line in export.patch)
    model = build_library_model(export).eval()  # the builder and patch lines, as the card shows them
    load_only_head_missing(model, tmp_path / "out" / "model.safetensors", set(export.head_keys))
    exec(export.drop_head, {"model": model, "torch": torch})
    channels = 1 if kwargs.get("in_channels") == 1 else 3
    x = torch.randn(2, channels, 32, 32)
    with torch.no_grad():
        assert max_diff(model(x), encoder(x)["global"]) < TOL


@pytest.mark.parametrize(
    ("name", "kwargs", "modality", "message"),
    [
        (
            "small_cnn",
            {"widths": [4]},
            "image",
            r"encoder 'small_cnn' cannot be exported to timm: it is mmssl's own",
        ),
        ("wide_resnet", {"depth": 10, "widen_factor": 1}, "image", r"'wide_resnet' .*FixMatch WRN-28-2"),
        ("video_cnn", {"widths": [4, 8]}, "video", r"no timm model has the architecture of 'video_cnn'"),
    ],
    ids=["small_cnn", "wide_resnet", "video_cnn"],
)
def test_unsupported_encoder(
    tmp_path: Path, name: str, kwargs: dict[str, Any], modality: str, message: str
) -> None:
    run_dir, _ = make_run(tmp_path, name, kwargs, modality=modality)
    with pytest.raises(ExportError, match=message) as err:
        export_run(run_dir, "timm", tmp_path / "out")
    assert "--format safetensors and --format onnx" in str(err.value)
    with pytest.raises(ExportError, match=f"'{name}' cannot be exported to torchvision"):
        export_run(run_dir, "torchvision", tmp_path / "out")
