"""Sample inputs for tracing and checking an exported encoder, by modality."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.export.common import ExportError

SAMPLE_BATCH = 2  # a dynamic dimension needs a sample size of at least 2


def example_input(
    encoder: nn.Module, modality: str | None, data: dict[str, Any], batch: int = SAMPLE_BATCH
) -> torch.Tensor:
    """A random input of the shape the run trained on (the run's ``data`` options, else the encoder's own
    sizes, else small defaults); seeded, so two calls give the same tensor."""
    g = torch.Generator().manual_seed(0)
    if modality == "image":
        channels = _in_channels(encoder, 3)
        size = _vit_size(encoder) or int(data.get("image_size") or 32)
        return torch.randn(batch, channels, size, size, generator=g)
    if modality == "video":
        size = int(getattr(encoder, "img_size", 0) or data.get("frame_size") or 64)
        frames = int(getattr(encoder, "num_frames", 0) or data.get("clip_len") or 4)
        return torch.randn(batch, frames, 3, size, size, generator=g)
    if modality == "audio":
        rate = _sample_rate(encoder)
        samples = int(round(rate * float(data.get("clip_seconds") or 1.0)))
        return torch.randn(batch, samples, generator=g) * 0.1
    if modality == "pointcloud":
        points = int(data.get("num_points") or 1024)
        return torch.randn(batch, points, int(getattr(encoder, "in_channels", 3)), generator=g)
    if modality == "text":
        length = int(data.get("eval_length") or data.get("block_size") or 32)
        length = min(length, int(getattr(encoder, "max_length", length)))
        vocab = int(getattr(encoder, "vocab_size", 100))
        # ids 2.. avoid the pad / special ids, so every position is attended to
        return torch.randint(2, vocab, (batch, length), generator=g)
    raise ExportError(
        f"no sample input is known for modality {modality!r}: the ONNX export traces the encoder on an "
        "image, video, audio, pointcloud or text input"
    )


def _in_channels(encoder: nn.Module, default: int) -> int:
    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return default


def fixed_input_size(encoder: nn.Module) -> tuple[int, int] | None:
    """``(H, W)`` a ViT was built for (the toolkit's ``patch_embed.img_size``, or that of the timm model
    inside the ``timm`` encoder); None for a model that takes any size."""
    for module in (encoder, getattr(encoder, "model", None)):
        size = getattr(getattr(module, "patch_embed", None), "img_size", None)
        if isinstance(size, int):
            return size, size
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return int(size[0]), int(size[1])
    return None


def _vit_size(encoder: nn.Module) -> int | None:
    size = fixed_input_size(encoder)
    return size[0] if size is not None and size[0] == size[1] else None


def _sample_rate(encoder: nn.Module) -> int:
    rate = getattr(encoder, "sample_rate", None) or getattr(
        getattr(encoder, "frontend", None), "sample_rate", None
    )
    return int(rate or 16000)
