"""``encoder: {name: timm, model: ...}`` and ``weights: PATH`` (initial weights for every encoder).

Small timm models only (``resnet10t``, timm's own ``test_*`` models), never pretrained: nothing is
downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from mmssl.config import load_recipe  # noqa: E402
from mmssl.encoders import ENCODER_FORMAT, build_encoder, load_encoder, save_encoder  # noqa: E402
from mmssl.errors import ConfigError  # noqa: E402
from mmssl.registry import ENCODERS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VIT = {"model": "test_vit", "img_size": 32, "patch_size": 4}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _build(options: dict) -> torch.nn.Module:
    return build_encoder("timm", dict(options)).eval()


def test_timm_is_a_registered_image_encoder() -> None:
    assert "timm" in ENCODERS.names("image")
    assert ENCODERS.modality_of("timm") == "image"


# options, input side, out_dim, number of tokens, global = the model's own pooling
CASES = [
    ({"model": "resnet10t"}, 64, 512, 4, True),  # CNN, total stride 32: 64 px -> 2x2 map
    (VIT, 32, 64, 64, True),  # ViT, 32 / patch 4 = 8x8 patches; the class token is dropped
    # NHWC feature map; its head adds a 256-wide layer, so global is the token mean (64-wide)
    ({"model": "test_mambaout"}, 64, 64, 4, False),
]


@pytest.mark.parametrize("options,side,out_dim,num_tokens,own_pooling", CASES, ids=lambda c: str(c))
def test_output_contract(options: dict, side: int, out_dim: int, num_tokens: int, own_pooling: bool) -> None:
    encoder = _build(options)
    assert encoder.out_dim == out_dim == encoder.model.num_features
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        out = encoder(x)
        features = encoder.model.forward_features(x)
        pooled = encoder.model.forward_head(features, pre_logits=True)
    assert out["global"].shape == (2, out_dim)
    assert out["tokens"].shape == (2, num_tokens, out_dim)
    assert encoder.own_pooling is own_pooling
    if own_pooling:
        torch.testing.assert_close(out["global"], pooled)
    else:
        assert pooled.shape == (2, encoder.model.head_hidden_size) != out["global"].shape
        torch.testing.assert_close(out["global"], out["tokens"].mean(dim=1))


def test_cnn_tokens_are_the_feature_map_cells() -> None:
    encoder = _build({"model": "resnet10t"})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, fmap = encoder(x), encoder.model.forward_features(x)
    assert fmap.shape == (2, 512, 2, 2)
    torch.testing.assert_close(out["tokens"][:, 1], fmap[:, :, 0, 1])  # row-major cells
    torch.testing.assert_close(out["global"], out["tokens"].mean(dim=1))  # average pool


def test_vit_tokens_drop_the_prefix_tokens() -> None:
    encoder = _build(VIT)
    assert encoder.num_prefix_tokens == 1
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out, seq = encoder(x), encoder.model.forward_features(x)
    assert seq.shape == (2, 65, 64)
    torch.testing.assert_close(out["tokens"], seq[:, 1:])


def test_in_chans_and_extra_options_reach_timm() -> None:
    encoder = _build({"model": "resnet10t", "in_chans": 1, "drop_path_rate": 0.1})
    with torch.no_grad():
        assert encoder(torch.randn(1, 1, 64, 64))["global"].shape == (1, 512)


def test_missing_timm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install mmssl\[timm\]"):
        build_encoder("timm", {"model": "resnet10t"})


def test_bad_model_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown timm model 'resnet10x'.*did you mean 'resnet10t'"):
        build_encoder("timm", {"model": "resnet10x"})
    with pytest.raises(ConfigError, match="resnet10t.*img_size"):  # a CNN takes no img_size
        build_encoder("timm", {"model": "resnet10t", "img_size": 32})
    with pytest.raises(ConfigError, match="'encoder.model' is required"):
        build_encoder("timm", {})


# --------------------------------------------------------------------------------- weights: PATH


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, side: int = 32) -> None:
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        out_a, out_b = a.eval()(x), b.eval()(x)
    torch.testing.assert_close(out_a["global"], out_b["global"], rtol=0, atol=0)
    torch.testing.assert_close(out_a["tokens"], out_b["tokens"], rtol=0, atol=0)


def test_timm_weights_round_trip_state_dict_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _build(VIT)
    torch.save(source.state_dict(), tmp_path / "vit.pt")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    fresh = _build(VIT)
    with pytest.raises(AssertionError):
        _same_outputs(source, fresh)  # a different random init
    for name in ("vit.pt", "vit.safetensors"):
        _same_outputs(source, _build({**VIT, "weights": str(tmp_path / name)}))


def test_timm_weights_from_a_bare_timm_checkpoint_with_its_classifier(tmp_path: Path) -> None:
    import timm

    classifier = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    state = classifier.state_dict()
    assert "fc.weight" in state  # keys as timm names them, head included
    torch.save(state, tmp_path / "pytorch_model.bin")
    encoder = _build({"model": "resnet10t", "weights": str(tmp_path / "pytorch_model.bin")})
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_weights_errors_name_the_key_the_file_and_the_keys(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(ConfigError, match=rf"'encoder\.weights': no such file or folder: {missing}"):
        _build({"model": "resnet10t", "weights": str(missing)})

    torch.save(_build({"model": "resnet10t"}).state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(ConfigError) as err:
        _build({**VIT, "weights": str(tmp_path / "resnet.pt")})
    text = str(err.value)
    assert "'encoder.weights'" in text and str(tmp_path / "resnet.pt") in text
    assert "missing keys" in text and "model.cls_token" in text
    assert "unexpected keys" in text and "model.conv1.0.weight" in text
    assert "more)" in text  # long lists are cut

    with pytest.raises(ConfigError, match=r"shapes \(file vs encoder\) \(1\): model\.conv1\.0\.weight"):
        _build({"model": "resnet10t", "in_chans": 1, "weights": str(tmp_path / "resnet.pt")})

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="'encoder.weights': .*empty is a folder without encoder.pt"):
        _build({"model": "resnet10t", "weights": str(tmp_path / "empty")})

    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="holds no state dict"):
        _build({"model": "resnet10t", "weights": str(tmp_path / "list.pt")})


def test_toolkit_encoder_weights_from_encoder_pt_and_export_folder(tmp_path: Path) -> None:
    from mmssl.export.safetensors import save_safetensors_encoder

    spec = {"name": "resnet18", "kwargs": {"small_stem": True}}
    source = build_encoder("resnet18", {"small_stem": True})
    save_encoder(source, spec, tmp_path / "encoder.pt")
    save_safetensors_encoder(source, spec, tmp_path / "export")
    for path in (tmp_path / "encoder.pt", tmp_path / "export", tmp_path / "export" / "model.safetensors"):
        loaded = build_encoder("resnet18", {"small_stem": True, "weights": str(path)})
        _same_outputs(source, loaded)
    with pytest.raises(ConfigError, match="'encoder.weights'.*does not match encoder 'resnet18'.*shapes"):
        build_encoder("resnet18", {"weights": str(tmp_path / "encoder.pt")})  # 7x7 stem vs 3x3


def test_weights_is_not_saved_in_the_encoder_spec(tmp_path: Path) -> None:
    init = tmp_path / "init.pt"
    torch.save(build_encoder("small_cnn", {"stem_stride": 2}).state_dict(), init)
    spec = {"name": "small_cnn", "kwargs": {"stem_stride": 2, "weights": str(init)}}
    encoder = build_encoder(spec["name"], dict(spec["kwargs"]))
    save_encoder(encoder, spec, tmp_path / "encoder.pt")
    init.unlink()  # the initial weights need not travel with the trained encoder
    raw = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert raw["format"] == ENCODER_FORMAT and raw["kwargs"] == {"stem_stride": 2}
    _same_outputs(encoder, load_encoder(tmp_path / "encoder.pt"))
    # an older file (or a checkpoint's encoder_spec) that still names the key loads too
    raw["kwargs"]["weights"] = str(init)
    torch.save(raw, tmp_path / "old.pt")
    _same_outputs(encoder, load_encoder(tmp_path / "old.pt"))


def test_recipes_accept_weights_on_every_encoder_and_list_it() -> None:
    cfg = load_recipe(REPO / "recipes" / "image" / "simclr.yaml", ["encoder.weights=/some/init.pt"])
    assert cfg.encoder["weights"] == "/some/init.pt"
    with pytest.raises(ConfigError, match="unknown key 'encoder.weight'.*did you mean 'weights'"):
        load_recipe(REPO / "recipes" / "image" / "simclr.yaml", ["encoder.weight=x.pt"])


def test_simclr_trains_a_timm_encoder_from_initial_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmssl.pipeline import train

    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))
    init = _build({"model": "resnet10t"})
    torch.save(init.state_dict(), tmp_path / "init.pt")
    overrides = [
        f"encoder={{name: timm, model: resnet10t, weights: {tmp_path / 'init.pt'}}}",
        "data.train_per_class=4",
        "data.test_per_class=2",
        "data.image_size=32",
        "train.steps=2",
        "train.batch_size=8",
        "train.num_workers=0",
        "train.progress=false",
        "train.warmup_steps=1",
        f"out_dir={tmp_path / 'run'}",
    ]
    cfg = load_recipe(REPO / "recipes" / "image" / "simclr.yaml", overrides)
    method, untrained, result, run_dir = train(cfg)
    _same_outputs(init, untrained)  # the run started from the file's weights
    assert result.steps == 2
    trained = load_encoder(run_dir / "encoder.pt")
    assert type(trained).__name__ == "TimmEncoder" and trained.out_dim == 512
    _same_outputs(method.encoder, trained)
