"""Image encoders: output contract, spatial bookkeeping, ViT pieces that masked modelling relies on."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.resnet import BasicBlock

from mmssl.registry import ENCODERS

# name, options, expected out_dim, expected number of tokens for a 32x32 input
CASES = [
    ("small_cnn", {}, 256, 16),  # 32 -> 3 max-pools -> 4x4
    ("small_cnn", {"stem_stride": 2}, 256, 4),  # strided first conv -> 2x2
    ("resnet18", {"small_stem": True}, 512, 16),  # total stride 8 -> 4x4
    ("resnet18", {}, 512, 1),  # total stride 32 -> 1x1
    ("resnet50", {}, 2048, 1),
    ("vit_tiny", {"depth": 2}, 192, 64),  # 32 / patch 4 = 8x8 patches
    ("vit_small", {"depth": 1}, 384, 64),
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_all_image_encoders_registered() -> None:
    assert {"resnet18", "resnet50", "small_cnn", "vit_tiny", "vit_small"} <= set(ENCODERS.names("image"))
    assert ENCODERS.modality_of("vit_tiny") == "image"


@pytest.mark.parametrize("name,options,out_dim,num_tokens", CASES)
def test_encoder_contract(name: str, options: dict, out_dim: int, num_tokens: int) -> None:
    encoder = ENCODERS.build(name, **options).eval()
    assert encoder.out_dim == out_dim
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 32, 32))
    assert out["global"].shape == (2, out_dim)
    assert out["tokens"].shape == (2, num_tokens, out_dim)
    assert torch.isfinite(out["global"]).all()


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_cnn_global_is_mean_of_tokens(name: str) -> None:
    encoder = ENCODERS.build(name, **({"small_stem": True} if name == "resnet18" else {})).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(out["global"], out["tokens"].mean(dim=1), atol=1e-5, rtol=1e-5)


def test_resnet_stems_and_resolution() -> None:
    small = ENCODERS.build("resnet18", small_stem=True)
    standard = ENCODERS.build("resnet18")
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert isinstance(small.stem[3], torch.nn.Identity)  # no max-pool
    with torch.no_grad():
        assert small.eval().feature_map(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)
        assert standard.eval().feature_map(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    gray = ENCODERS.build("small_cnn", in_channels=1, widths=[8, 16])
    assert gray(torch.randn(2, 1, 16, 16))["tokens"].shape == (2, 64, 16)


def test_zero_init_residual() -> None:
    encoder = ENCODERS.build("resnet18", zero_init_residual=True)
    blocks = [m for m in encoder.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    default = ENCODERS.build("resnet18")
    assert all(torch.count_nonzero(b.bn2.weight) > 0 for b in default.modules() if isinstance(b, BasicBlock))


def test_vit_sincos_positions_match_formula() -> None:
    vit = ENCODERS.build("vit_tiny", depth=1)
    pos = vit.pos_embed
    d, grid = 192, 8
    assert pos.shape == (1, 1 + grid * grid, d) and not pos.requires_grad
    assert torch.count_nonzero(pos[0, 0]) == 0  # CLS position
    quarter = d // 4
    for r, c in [(0, 0), (3, 5), (7, 2)]:
        row = pos[0, 1 + r * grid + c]
        for k in (0, 7, quarter - 1):
            w = 10000 ** (-k / quarter)
            assert row[k].item() == pytest.approx(math.sin(r * w), abs=1e-5)
            assert row[quarter + k].item() == pytest.approx(math.cos(r * w), abs=1e-5)
            assert row[2 * quarter + k].item() == pytest.approx(math.sin(c * w), abs=1e-5)
            assert row[3 * quarter + k].item() == pytest.approx(math.cos(c * w), abs=1e-5)
    learned = ENCODERS.build("vit_tiny", depth=1, pos_embed="learned")
    assert learned.pos_embed.requires_grad


def test_vit_forward_tokens_on_visible_subset() -> None:
    vit = ENCODERS.build("vit_tiny", depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = vit.patch_embed(x) + vit.pos_embed[:, 1:]
        assert tokens.shape == (2, 64, 192)
        full = vit(x)
        again = vit.forward_tokens(tokens)
        torch.testing.assert_close(full["global"], again[:, 0])
        torch.testing.assert_close(full["tokens"], again[:, 1:])

        keep = torch.randperm(64)[:16]  # MAE keeps 25% of the patches
        visible = vit.forward_tokens(tokens[:, keep])
        assert visible.shape == (2, 17, 192)
        # No masks, no positions added inside: attention is permutation-equivariant, so shuffling the
        # visible tokens shuffles their outputs and leaves CLS unchanged.
        perm = torch.randperm(16)
        shuffled = vit.forward_tokens(tokens[:, keep[perm]])
        torch.testing.assert_close(shuffled[:, 0], visible[:, 0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(shuffled[:, 1:], visible[:, 1:][:, perm], atol=1e-5, rtol=1e-4)
        # Dropping tokens changes what CLS sees.
        assert not torch.allclose(visible[:, 0], full["global"], atol=1e-4)


def test_vit_gradients_and_input_check() -> None:
    vit = ENCODERS.build("vit_tiny", depth=1)
    vit(torch.randn(2, 3, 32, 32))["global"].sum().backward()
    assert vit.patch_embed.proj.weight.grad is not None and vit.cls_token.grad is not None
    assert vit.pos_embed.grad is None  # fixed sin-cos
    with pytest.raises(ValueError, match="img_size"):
        vit(torch.randn(1, 3, 64, 64))
    big = ENCODERS.build("vit_tiny", depth=1, img_size=64, patch_size=16)
    assert big(torch.randn(1, 3, 64, 64))["tokens"].shape == (1, 16, 192)


def test_vit_mean_pool_is_the_mean_of_patch_tokens() -> None:
    from mmssl.registry import ENCODERS

    torch.manual_seed(0)
    enc = ENCODERS.build("vit_tiny", depth=1, global_pool="mean").eval()
    out = enc(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(out["global"], out["tokens"].mean(dim=1))


def test_vit_base_has_the_published_parameter_count() -> None:
    # ViT-B/16 at 224 px (Dosovitskiy et al. 2021; timm's vit_base_patch16_224): 86,567,656 parameters
    # with its 1000-class head (768 * 1000 + 1000 = 769,000), so 85,798,656 without it.
    encoder = ENCODERS.get("vit_base")(img_size=224, patch_size=16)
    assert sum(p.numel() for p in encoder.parameters()) == 86_567_656 - 769_000
    assert encoder.out_dim == 768 and encoder.num_patches == 196


def test_vit_grad_checkpointing_gives_the_same_outputs_and_gradients() -> None:
    x = torch.randn(3, 3, 32, 32)
    grads = []
    for recompute in (False, True):
        torch.manual_seed(0)
        encoder = ENCODERS.get("vit_tiny")(depth=3, grad_checkpointing=recompute)
        out = encoder(x)["global"]
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in encoder.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
