"""Tiny towers and in-memory datasets for the cross-modal tests (no audio code needed)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset


class TinyTower(nn.Module):
    """A linear encoder following the contract: ``{"global": [B, out_dim]}``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"global": self.fc(x.flatten(1))}


class ListDataset(Dataset):
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def paired_items(n: int, num_classes: int = 4, seed: int = 0) -> list[dict[str, Any]]:
    """Items ``{"image": [3, 8, 8], "audio": [1, 8, 8], "label", "index"}``: both sides carry the class."""
    g = torch.Generator().manual_seed(seed)
    protos_img = torch.randn(num_classes, 3, 8, 8, generator=g)
    protos_aud = torch.randn(num_classes, 1, 8, 8, generator=g)
    items = []
    for i in range(n):
        c = i % num_classes
        items.append(
            {
                "image": protos_img[c] + 0.3 * torch.randn(3, 8, 8, generator=g),
                "audio": protos_aud[c] + 0.3 * torch.randn(1, 8, 8, generator=g),
                "label": c,
                "index": i,
            }
        )
    return items


def labelled(items: list[dict[str, Any]], key: str) -> ListDataset:
    return ListDataset([{"input": it[key], "label": it["label"]} for it in items])
