"""``weights: PATH`` from a ViT trained at another image size: the position table is resampled to the new
grid (CLS position kept, the grid bicubically interpolated) for ``pos_embed: learned``, replaced by the
model's own for ``pos_embed: sincos``; a table of another width is a config error naming
``encoder.weights``. The timm encoder does the same with timm's ``resample_abs_pos_embed``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmssl.core.transformer import sincos_pos_embed_2d
from mmssl.encoders import build_encoder
from mmssl.errors import ConfigError

SMALL = {"patch_size": 4, "depth": 1}
LOGGER = "mmssl.modalities.image.encoders"


def _saved_vit(path: Path, name: str = "vit_tiny", **options: object) -> dict[str, torch.Tensor]:
    """A ViT whose learned table is not smooth (random), saved as a plain state dict."""
    torch.manual_seed(0)
    source = build_encoder(name, {**SMALL, **options})
    with torch.no_grad():
        source.pos_embed.normal_()
    torch.save(source.state_dict(), path)
    return source.state_dict()


def _bicubic_grid(table: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """The grid part of ``table`` resized independently of the code under test."""
    dim = table.shape[-1]
    square = table[:, 1:].reshape(1, old, old, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(square, size=(new, new), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(1, new * new, dim)


def test_learned_table_is_resampled_to_the_new_grid(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _saved_vit(tmp_path / "vit32.pt", img_size=32, pos_embed="learned")  # 8x8 grid
    with caplog.at_level(logging.INFO, logger=LOGGER):
        vit = build_encoder(
            "vit_tiny",
            {**SMALL, "img_size": 64, "pos_embed": "learned", "weights": str(tmp_path / "vit32.pt")},
        )
    table = vit.pos_embed.detach()
    assert table.shape == (1, 1 + 16 * 16, 192)
    assert torch.equal(table[:, :1], source["pos_embed"][:, :1])  # the CLS position is kept
    torch.testing.assert_close(table[:, 1:], _bicubic_grid(source["pos_embed"], 8, 16))
    for key, value in vit.state_dict().items():  # nothing else changes
        if key != "pos_embed":
            assert torch.equal(value, source[key]), key
    (line,) = [r.getMessage() for r in caplog.records if "pos_embed" in r.getMessage()]
    assert "resampled from a 8x8 to a 16x16 grid" in line
    with torch.no_grad():
        assert vit.eval()(torch.randn(1, 3, 64, 64))["global"].shape == (1, 192)


def test_equal_grids_load_the_table_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _saved_vit(tmp_path / "vit32.pt", img_size=32, pos_embed="learned")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        vit = build_encoder(
            "vit_tiny",
            {**SMALL, "img_size": 32, "pos_embed": "learned", "weights": str(tmp_path / "vit32.pt")},
        )
    assert torch.equal(vit.pos_embed.detach(), source["pos_embed"])
    assert not [r for r in caplog.records if "pos_embed" in r.getMessage()]


def test_sincos_table_is_replaced_by_the_models_own(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _saved_vit(tmp_path / "vit32.pt", img_size=32)  # sincos, then randomised: not the fixed table
    with caplog.at_level(logging.INFO, logger=LOGGER):
        vit = build_encoder("vit_tiny", {**SMALL, "img_size": 64, "weights": str(tmp_path / "vit32.pt")})
    assert torch.equal(vit.pos_embed.detach(), sincos_pos_embed_2d(192, 16).unsqueeze(0))
    assert not vit.pos_embed.requires_grad
    assert torch.equal(vit.cls_token.detach(), source["cls_token"])
    (line,) = [r.getMessage() for r in caplog.records if "pos_embed" in r.getMessage()]
    assert "replaced by this ViT's fixed sin-cos table for its 16x16 grid" in line


def test_another_embed_dim_names_encoder_weights(tmp_path: Path) -> None:
    _saved_vit(tmp_path / "small.pt", name="vit_small", img_size=32, pos_embed="learned")  # width 384
    with pytest.raises(ConfigError) as err:
        build_encoder(
            "vit_tiny",
            {**SMALL, "img_size": 64, "pos_embed": "learned", "weights": str(tmp_path / "small.pt")},
        )
    text = str(err.value)
    assert text.startswith("'encoder.weights': ") and str(tmp_path / "small.pt") in text
    assert "pos_embed has shape (1, 65, 384) where this ViT's is (1, 257, 192)" in text
    assert "another width cannot be resized" in text


def test_timm_vit_table_is_resampled_with_timms_function(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    bare = timm.create_model("test_vit", pretrained=False, num_classes=10, img_size=32, patch_size=4)
    with torch.no_grad():
        bare.pos_embed.normal_()
    torch.save(bare.state_dict(), tmp_path / "timm_vit.pth")  # timm's keys, classifier included
    old = bare.pos_embed.detach()
    with caplog.at_level(logging.INFO, logger="mmssl.modalities.image.timm_encoder"):
        encoder = build_encoder(
            "timm",
            {"model": "test_vit", "img_size": 64, "patch_size": 4, "weights": str(tmp_path / "timm_vit.pth")},
        )
    table = encoder.model.pos_embed.detach()
    assert table.shape == (1, 1 + 16 * 16, 64)
    assert torch.equal(table[:, :1], old[:, :1])
    torch.testing.assert_close(table[:, 1:], _bicubic_grid(old, 8, 16))
    assert torch.equal(encoder.model.cls_token.detach(), bare.cls_token.detach())
    assert any("resampled from a 8x8 to a 16x16 grid" in r.getMessage() for r in caplog.records)
