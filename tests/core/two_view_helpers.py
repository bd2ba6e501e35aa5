"""A tiny encoder and a dataset of noisy view pairs, shared by the two-view method tests."""

from __future__ import annotations

import torch
from torch import nn


class VecEncoder(nn.Module):
    out_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x):
        return {"global": self.net(x)}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(0)
        self.centers = torch.randn(n, 8, generator=g) * 2

    def __len__(self) -> int:
        return len(self.centers)

    def __getitem__(self, i):
        c = self.centers[i]
        return {"views": [c + 0.3 * torch.randn(8), c + 0.3 * torch.randn(8)], "index": i}


def two_view_batch(b: int = 12):
    ds = Pairs()
    items = [ds[i] for i in range(b)]
    return {
        "views": [torch.stack([it["views"][k] for it in items]) for k in range(2)],
        "index": torch.arange(b),
    }
