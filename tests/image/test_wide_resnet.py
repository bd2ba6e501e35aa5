"""WRN-28-2 as in FixMatch / USB: size, contract, and the semi-supervised variant's details."""

import pytest
import torch

from mmssl.encoders import build_encoder
from mmssl.modalities.image.wide_resnet import WideBasicBlock, wide_resnet


def test_wrn_28_2_has_the_published_parameter_count():
    # 1,467,610 parameters with a 10-class linear head: the count reported for WRN-28-2 in public CIFAR
    # tables (FixMatch: "1.5 M"); the encoder is the trunk without the head (128 x 10 + 10).
    encoder = wide_resnet(depth=28, widen_factor=2)
    assert sum(p.numel() for p in encoder.parameters()) + 128 * 10 + 10 == 1_467_610


def test_contract_outputs_and_registry():
    encoder = build_encoder("wide_resnet", {"depth": 10, "widen_factor": 1})
    out = encoder(torch.randn(3, 3, 32, 32))
    assert encoder.out_dim == 64
    assert out["global"].shape == (3, 64)
    assert out["tokens"].shape == (3, 64, 64)  # 8x8 map after strides 1, 2, 2
    torch.testing.assert_close(out["global"], out["tokens"].mean(dim=1))


def test_bad_depth_is_named():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        wide_resnet(depth=27)


def test_first_block_activates_before_the_residual_and_others_do_not():
    torch.manual_seed(0)
    encoder = wide_resnet(depth=16, widen_factor=2)
    blocks = [b for b in encoder.modules() if isinstance(b, WideBasicBlock)]
    assert [b.activate_before_residual for b in blocks] == [True] + [False] * (len(blocks) - 1)
    # The shortcut of the first block sees act(bn(x)): feeding it x instead changes the output.
    block = blocks[0].eval()
    x = torch.randn(2, 16, 8, 8)
    expected = block.shortcut(block.act(block.bn1(x))) + block.conv2(
        block.act(block.bn2(block.conv1(block.act(block.bn1(x)))))
    )
    torch.testing.assert_close(block(x), expected)
    raw = block.shortcut(x) + block.conv2(block.act(block.bn2(block.conv1(block.act(block.bn1(x))))))
    assert not torch.allclose(block(x), raw)


def test_batchnorm_statistics_move_slowly():
    # BN momentum 0.001 (TF decay 0.999): one training batch moves the running mean by 0.1% of the gap.
    encoder = wide_resnet(depth=10, widen_factor=1).train()
    x = torch.randn(8, 3, 32, 32) + 5.0
    encoder(x)
    first_bn = encoder.groups[0][0].bn1
    batch_mean = encoder.stem(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(first_bn.running_mean, 0.001 * batch_mean.detach(), rtol=1e-4, atol=1e-6)
