"""Wide ResNet (Zagoruyko & Komodakis, BMVC 2016) as used by FixMatch, USB and most semi-supervised
CIFAR benchmarks: WRN-28-2 (1.5 M parameters) is the network of the FixMatch paper's CIFAR-10 table.

Pre-activation basic blocks (BN -> LeakyReLU -> conv3x3, twice) in three groups of ``(depth - 4) / 6``
blocks with ``16k, 32k, 64k`` channels (``k`` = ``widen_factor``) and strides 1, 2, 2 after a 3x3 stem
of 16 channels; a final BN -> LeakyReLU, then global average pooling. The semi-supervised variant
(FixMatch appendix B.1; its reference code ``libml/models.py``) differs from the original WRN in three
ways, all kept here: LeakyReLU with slope 0.1 instead of ReLU, BN momentum 0.001 (TF decay 0.999) so the
running statistics average over many steps of strongly augmented batches, and the first group
"activates before the residual": its shortcut takes the pre-activated input instead of the raw one.
Convolution weights use He initialisation (fan-out, leaky-ReLU gain) as in that code.

The encoder contract: ``forward(x)`` returns ``{"global": [B, 64k], "tokens": [B, h*w, 64k]}`` (an 8x8
map for 32-px inputs).
"""

from __future__ import annotations

import torch
from torch import nn


class WideBasicBlock(nn.Module):
    """``x0 + conv(act(bn(conv(act(bn(x0))))))``, with a 1x1 strided convolution on the shortcut when the
    width or the resolution changes; ``activate_before_residual`` feeds the shortcut ``act(bn(x0))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        activate_before_residual: bool,
        bn_momentum: float,
        leaky_slope: float,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=bn_momentum)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.act = nn.LeakyReLU(leaky_slope)
        self.activate_before_residual = activate_before_residual
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels and stride == 1
            else nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        out = self.conv2(self.act(self.bn2(self.conv1(pre))))
        return self.shortcut(pre if self.activate_before_residual else x) + out


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` trunk; ``out_dim`` = ``64 * widen_factor``."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 2,
        in_channels: int = 3,
        bn_momentum: float = 0.001,
        leaky_slope: float = 0.1,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"wide_resnet depth must be 6n + 4 with n >= 1 (e.g. 28), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"wide_resnet widen_factor must be >= 1, got {widen_factor}")
        blocks_per_group = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        groups: list[nn.Module] = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [
                WideBasicBlock(
                    widths[g] if b == 0 else widths[g + 1],
                    widths[g + 1],
                    stride if b == 0 else 1,
                    activate_before_residual=(g == 0 and b == 0),
                    bn_momentum=bn_momentum,
                    leaky_slope=leaky_slope,
                )
                for b in range(blocks_per_group)
            ]
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(widths[-1], momentum=bn_momentum)
        self.act = nn.LeakyReLU(leaky_slope)
        self.out_dim: int = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu", a=leaky_slope)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.groups(self.stem(x))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fmap = self.feature_map(x)
        return {"global": fmap.mean(dim=(2, 3)), "tokens": fmap.flatten(2).transpose(1, 2)}


def wide_resnet(
    depth: int = 28,
    widen_factor: int = 2,
    in_channels: int = 3,
    bn_momentum: float = 0.001,
    leaky_slope: float = 0.1,
) -> WideResNet:
    """Wide ResNet, WRN-28-2 by default (FixMatch / USB CIFAR-10); ``out_dim`` = ``64 * widen_factor``.

    ``depth``: 6n + 4 layers (n blocks per group). ``widen_factor``: k, channel multiplier.
    ``bn_momentum``: PyTorch BN momentum (0.001 = TF decay 0.999). ``leaky_slope``: LeakyReLU slope.
    """
    return WideResNet(depth, widen_factor, in_channels, bn_momentum, leaky_slope)
