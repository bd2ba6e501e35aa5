"""MAE and inpainting on a ViT: patch order, forward passes, the recipe through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmssl.cli import main
from mmssl.core.masking import gather_tokens
from mmssl.modalities.image.methods.mae import MaskedImageModel, patchify, unpatchify
from mmssl.registry import DATASETS, ENCODERS, METHODS

TINY_DECODER = {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _vit(img_size: int = 16, patch_size: int = 4):
    return ENCODERS.build("vit_tiny", img_size=img_size, patch_size=patch_size, depth=1)


def test_patchify_unpatchify_round_trip_and_patch_order():
    x = torch.randn(2, 3, 12, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(unpatchify(p, 4, grid=(3, 2)), x)
    # Patch n = (row i, col j) in row-major order, flattened as (row in patch, col in patch, channel).
    i, j = 2, 1
    assert torch.equal(
        p[:, i * 2 + j], x[:, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].permute(0, 2, 3, 1).flatten(1)
    )
    sq = torch.randn(1, 3, 16, 16)
    assert torch.equal(unpatchify(patchify(sq, 4), 4), sq)


def test_patchify_order_matches_the_vit_tokens():
    """The ViT's patch embedding is a linear map of exactly these pixel vectors, token by token."""
    vit = _vit()
    x = torch.randn(2, 3, 16, 16)
    w = vit.patch_embed.proj.weight  # [D, C, p, p] -> [D, p*p*C] in (row, col, channel) order
    linear = patchify(x, 4) @ w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).T + vit.patch_embed.proj.bias
    assert torch.allclose(vit.patch_embed(x), linear, atol=1e-5)


@pytest.mark.parametrize("name", ["mae", "inpainting"])
def test_forward_on_a_tiny_vit(name):
    torch.manual_seed(0)
    model = METHODS.build(name, encoder=_vit(), **TINY_DECODER)
    assert isinstance(model, MaskedImageModel)
    x = torch.randn(4, 3, 16, 16)
    out = model({"image": x})
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    pred, mask = model.reconstruct(x)
    assert pred.shape == (4, 16, 48)
    if name == "mae":
        assert mask.num_masked == 12 and model.norm_target
    else:  # the central 2x2 block of the 4x4 patch grid, no normalised targets
        expected = torch.zeros(4, 4)
        expected[1:3, 1:3] = 1
        assert all(torch.equal(m.view(4, 4), expected) for m in mask.mask) and not model.norm_target


def test_mae_loss_is_pixel_mse_on_masked_patches():
    torch.manual_seed(1)
    model = METHODS.build("mae", encoder=_vit(), norm_pix_loss=False, **TINY_DECODER)
    x = torch.randn(3, 3, 16, 16)
    torch.manual_seed(5)
    loss = model({"image": x})["loss"]
    torch.manual_seed(5)
    pred, mask = model.reconstruct(x)  # the same global-RNG draw, hence the same mask
    target = patchify(x, 4)
    per_patch = ((pred - target) ** 2).mean(-1)
    masked = gather_tokens(per_patch.unsqueeze(-1), mask.ids_masked)
    assert loss.item() == pytest.approx(masked.mean().item(), rel=1e-5)


def test_inpainting_norm_pix_loss_regresses_each_block_patch_normalised():
    # MAE's target on inpainting's block: every masked patch normalised by its own mean and
    # (unbiased) variance, computed here independently of the loss code.
    torch.manual_seed(2)
    model = METHODS.build("inpainting", encoder=_vit(), norm_pix_loss=True, **TINY_DECODER)
    assert model.norm_target
    assert not METHODS.build("inpainting", encoder=_vit(), **TINY_DECODER).norm_target  # the paper's
    x = torch.randn(3, 3, 16, 16)
    loss = model({"image": x})["loss"]
    pred, mask = model.reconstruct(x)  # the central block: the same mask without a draw
    target = patchify(x, 4)
    mean = target.mean(-1, keepdim=True)
    var = ((target - mean) ** 2).sum(-1, keepdim=True) / (target.shape[-1] - 1)
    per_patch = ((pred - (target - mean) / (var + 1e-6).sqrt()) ** 2).mean(-1)
    masked = gather_tokens(per_patch.unsqueeze(-1), mask.ids_masked)
    assert loss.item() == pytest.approx(masked.mean().item(), rel=1e-5)


def test_inpainting_random_blocks_hide_the_count_in_several_holes():
    # Pathak et al.'s "random block" with the factory's block size passed through: the default (4 patches)
    # on this 4x4 grid would always hide one 2x2 square; single-patch blocks may hide any 4 patches.
    model = METHODS.build("inpainting", encoder=_vit(), position="blocks", block_tokens=1, **TINY_DECODER)
    mask = model.masker(64, 16, generator=torch.Generator().manual_seed(0))
    assert mask.num_masked == 4 and (mask.mask.sum(dim=1) == 4).all()
    squares = {
        frozenset({4 * r + c, 4 * r + c + 1, 4 * r + c + 4, 4 * r + c + 5})
        for r in range(3)
        for c in range(3)
    }
    assert any(frozenset(row.tolist()) not in squares for row in mask.ids_masked)
    loss = model({"image": torch.randn(2, 3, 16, 16)})["loss"]
    assert torch.isfinite(loss)


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="ViT"):
        METHODS.build("mae", encoder=ENCODERS.build("small_cnn"))
    with pytest.raises(ValueError, match="mask_ratio"):
        METHODS.build("mae", encoder=_vit(), mask_ratio=1.0)
    with pytest.raises(ValueError, match="position"):
        METHODS.build("inpainting", encoder=_vit(), position="corner")
    with pytest.raises(ValueError, match="method.block_tokens"):
        METHODS.build("inpainting", encoder=_vit(), position="blocks", block_tokens=0)
    model = METHODS.build("mae", encoder=_vit(), **TINY_DECODER)
    with pytest.raises(KeyError, match="image"):
        model({"views": [torch.randn(2, 3, 16, 16)] * 2, "index": torch.arange(2)})


def test_mae_views_give_augmented_single_images(tmp_path):
    data = DATASETS.build(
        "procedural_shapes",
        views="mae",
        image_size=16,
        train_per_class=2,
        test_per_class=1,
        cache_dir=str(tmp_path),
    )
    item = data.pretrain[0]
    assert set(item) == {"image", "label", "index"} and item["image"].shape == (3, 16, 16)
    assert data.batch_transform is None
    torch.manual_seed(0)
    a = data.pretrain[0]["image"]
    torch.manual_seed(1)
    assert not torch.equal(a, data.pretrain[0]["image"])  # random crop / flip differ between draws


TINY_RUN = [
    "data.train_per_class=4",
    "data.test_per_class=2",
    "data.image_size=16",
    "encoder.img_size=16",
    "encoder.depth=1",
    "method.decoder_dim=32",
    "method.decoder_depth=1",
    "method.decoder_heads=2",
    "train.steps=2",
    "train.batch_size=8",
    "train.warmup_steps=1",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
    "eval.few_shot.shots=[1]",
    "eval.few_shot.seeds=1",
    "eval.few_shot.epochs=5",
    "eval.knn.k=3",
    "eval.linear.epochs=2",
]


@pytest.mark.parametrize("recipe", ["image/mae", "image/inpainting"])
def test_recipe_runs_and_writes_the_reconstruction_grid(recipe, tmp_path):
    out = tmp_path / "run"
    assert main(["run", recipe, *TINY_RUN, f"out_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == recipe.split("/")[1] and metrics["steps"] == 2
    assert {"knn_top1", "linear_top1", "fewshot_1_mean"} <= set(metrics["baselines"]["random_init"])
    png = out / "figures" / f"{recipe.split('/')[1]}_reconstructions.png"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 100  # 3 rows x 8 columns
