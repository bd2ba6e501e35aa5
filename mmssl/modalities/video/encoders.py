"""Frame-grid encoders for video, registered in ``mmssl.registry.ENCODERS`` with ``modality="video"``.

A video encoder maps each frame to a grid of cell features (the "nodes" of the contrastive random
walk, the pixels of label propagation). It takes a batch of frames or a batch of clips:

- ``[B, 3, H, W]``    -> ``{"global": [B, D], "tokens": [B, h*w, D], "grid": (h, w)}``
- ``[B, T, 3, H, W]`` -> ``{"global": [B, D], "tokens": [B, T*h*w, D], "grid": (h, w)}``

``tokens`` are time-major (frame 0's cells in row-major order, then frame 1's ...), ``global`` is
the mean over time and cells. ``feature_map(frames [N, 3, H, W]) -> [N, D, h, w]`` gives the raw
maps for methods that need the spatial layout. Features are *not* L2-normalised here: the walk's
projection head and the propagation evaluator normalise what they compare.

- ``video_resnet18``: ResNet-18 whose ``layer3`` and ``layer4`` keep stride 1, so the output stride
  is 8 instead of 32 (Jabri et al. 2020, Sec. 4: "reduced stride" for dense correspondence).
  ``out_layer="layer3"`` stops after res3 (256-d), the features CRW uses for label propagation.
- ``video_cnn``: a few conv-BN-ReLU blocks with total stride 4 or 8, for CPU recipes.
- ``RawColorEncoder`` (not registered; it has no parameters to train): average-pooled Lab colour of
  each cell, the "raw pixels" baseline of the propagation evaluator.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from mmssl.modalities.image.color import rgb_to_lab, to_unit_rgb


class FrameGridEncoder(nn.Module, metaclass=abc.ABCMeta):
    """Base class: subclasses implement ``feature_map``; ``forward`` applies the dict contract."""

    out_dim: int
    stride: int

    @abc.abstractmethod
    def feature_map(self, frames: Tensor) -> Tensor:
        """``[N, 3, H, W]`` frames -> ``[N, D, h, w]`` feature map at ``stride``."""

    def forward(self, x: Tensor) -> dict[str, Any]:
        if x.dim() == 4:
            fmap = self.feature_map(x)  # [B, D, h, w]
            tokens = fmap.flatten(2).transpose(1, 2)
            return {"global": tokens.mean(dim=1), "tokens": tokens, "grid": tuple(fmap.shape[-2:])}
        if x.dim() == 5:
            b, t = x.shape[:2]
            fmap = self.feature_map(x.flatten(0, 1))  # [B*T, D, h, w]
            d, h, w = fmap.shape[1:]
            # [B*T, D, h, w] -> [B, T, h*w, D] -> [B, T*h*w, D] (time-major, then row-major cells)
            tokens = fmap.reshape(b, t, d, h * w).transpose(2, 3).reshape(b, t * h * w, d)
            return {"global": tokens.mean(dim=1), "tokens": tokens, "grid": (h, w)}
        raise ValueError(f"video encoders take [B, 3, H, W] or [B, T, 3, H, W], got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------- ResNet


class VideoResNet18(FrameGridEncoder):
    """ResNet-18 trunk (random init) with stride-1 ``layer3``/``layer4``: output stride 8.

    The first block of each of these layers is rebuilt with stride 1 (its 3x3 conv and its 1x1
    downsample projection), so a 256x256 frame gives a 32x32 grid; the weights keep their shapes.
    """

    def __init__(self, out_layer: str = "layer4", zero_init_residual: bool = False) -> None:
        super().__init__()
        if out_layer not in ("layer3", "layer4"):
            raise ValueError(f"out_layer must be 'layer3' or 'layer4', got '{out_layer}'")
        net = tv_resnet.resnet18(weights=None, zero_init_residual=zero_init_residual)
        for layer in (net.layer3, net.layer4):
            block = layer[0]
            block.conv1.stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        layers = [net.layer1, net.layer2, net.layer3] + ([net.layer4] if out_layer == "layer4" else [])
        self.layers = nn.Sequential(*layers)
        self.out_layer = out_layer
        self.out_dim: int = 512 if out_layer == "layer4" else 256
        self.stride: int = 8

    def feature_map(self, frames: Tensor) -> Tensor:
        return self.layers(self.stem(frames))


def video_resnet18(out_layer: str = "layer4", zero_init_residual: bool = False) -> VideoResNet18:
    """ResNet-18 with reduced stride (layer3/4 stride 1, output stride 8) as in CRW; never pretrained.

    ``out_layer``: ``"layer4"`` (res4, ``out_dim`` 512) or ``"layer3"`` (res3, 256).
    ``zero_init_residual``: start each residual block's last BN at zero.
    """
    return VideoResNet18(out_layer, zero_init_residual)


# ------------------------------------------------------------------------------------ Small CNN


class VideoCNN(FrameGridEncoder):
    """Conv-BN-ReLU blocks; every block after the first halves the resolution with a strided conv.

    ``stride`` 4: a 3x3/2 stem then one stride-2 block; 8: one more. Extra ``widths`` entries add
    stride-1 blocks at the final resolution (more depth and receptive field, same grid).
    Padding is reflective so border cells do not all share a zero-padding signature (a cue the
    walk could otherwise use to match positions instead of content).
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), stride: int = 4) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"video_cnn stride must be 4 or 8, got {stride}")
        n_down = {4: 2, 8: 3}[stride]
        if len(widths) < n_down:
            raise ValueError(f"video_cnn with stride {stride} needs at least {n_down} widths, got {widths}")
        layers: list[nn.Module] = []
        c_in = 3
        for i, width in enumerate(widths):
            s = 2 if i < n_down else 1
            layers += [
                nn.Conv2d(c_in, width, 3, stride=s, padding=1, padding_mode="reflect", bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.out_dim: int = int(widths[-1])
        self.stride: int = stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_map(self, frames: Tensor) -> Tensor:
        return self.features(frames)


def video_cnn(widths: Sequence[int] = (32, 64, 128), stride: int = 4) -> VideoCNN:
    """A small CPU CNN with output stride 4 or 8; ``out_dim`` = ``widths[-1]``.

    ``widths``: channels per conv-BN-ReLU block; the first 2 (stride 4) or 3 (stride 8) blocks
    downsample by 2, later ones keep the resolution.
    """
    return VideoCNN(tuple(widths), stride)


# ------------------------------------------------------------------------------ Raw colour cells


class RawColorEncoder(FrameGridEncoder):
    """Average Lab colour of each ``stride x stride`` cell: the "raw pixels as features" baseline.

    Takes frames normalised with ImageNet mean/std (as every video dataset here yields them),
    undoes that, converts to CIE Lab and average-pools; channels are scaled to roughly unit range
    (L / 100, a / 100, b / 100) so an affinity temperature tuned for unit vectors means the same.
    No parameters; ``out_dim`` 3.
    """

    def __init__(self, stride: int = 8) -> None:
        super().__init__()
        self.out_dim: int = 3
        self.stride: int = stride

    def feature_map(self, frames: Tensor) -> Tensor:
        lab = rgb_to_lab(to_unit_rgb(frames.float())) / 100.0
        return F.avg_pool2d(lab, self.stride, self.stride) if self.stride > 1 else lab


def frame_feature_map(encoder: nn.Module, frames: Tensor) -> Tensor:
    """``[N, 3, H, W]`` -> ``[N, D, h, w]`` for any encoder: its ``feature_map`` when it has one,
    else its ``tokens`` reshaped with its ``grid`` (encoders following the dict contract)."""
    if hasattr(encoder, "feature_map"):
        return encoder.feature_map(frames)
    out = encoder(frames)
    if "grid" not in out:
        raise ValueError(f"{type(encoder).__name__} returns no 'grid': not a frame-grid encoder")
    h, w = out["grid"]
    return out["tokens"].transpose(1, 2).reshape(frames.shape[0], -1, h, w)


__all__ = [
    "FrameGridEncoder",
    "VideoResNet18",
    "VideoCNN",
    "RawColorEncoder",
    "frame_feature_map",
    "video_resnet18",
    "video_cnn",
]
