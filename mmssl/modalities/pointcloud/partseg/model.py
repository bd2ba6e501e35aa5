"""The part segmenter: a point encoder's per-point tokens and a linear head over all parts, and its
category-restricted predictions (Gadelha et al., ECCV 2020, Sec. 4)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmssl.modalities.pointcloud.acd_pretext import encoder_input
from mmssl.modalities.pointcloud.partseg.metrics import restricted_argmax


class PartSegmenter(nn.Module):
    """``encoder`` tokens ``[B, N, D]`` -> per-point part logits ``[B, N, num_parts]`` (a linear head)."""

    def __init__(self, encoder: nn.Module, num_parts: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.in_channels = int(getattr(encoder, "in_channels", 3))
        self.head = nn.Linear(encoder.out_dim, num_parts)
        nn.init.trunc_normal_(self.head.weight, std=0.01, generator=generator)
        nn.init.zeros_(self.head.bias)

    def tokens(self, points: Tensor, normals: Tensor | None) -> Tensor:
        return self.encoder(encoder_input(points, normals, self.in_channels))["tokens"]

    def forward(self, points: Tensor, normals: Tensor | None = None) -> Tensor:
        return self.head(self.tokens(points, normals))


@torch.no_grad()
def predict_parts(
    model: PartSegmenter, split: Mapping[str, Tensor], mask: Tensor, batch_size: int = 16
) -> Tensor:
    """Category-restricted part predictions ``[S, N]`` for every shape of ``split`` (eval mode)."""
    device = next(model.parameters()).device
    model.eval()
    preds = []
    for start in range(0, split["points"].shape[0], batch_size):
        sl = slice(start, start + batch_size)
        logits = model(split["points"][sl].to(device), split["normals"][sl].to(device))
        preds.append(restricted_argmax(logits, split["category"][sl].to(device), mask).cpu())
    return torch.cat(preds)
