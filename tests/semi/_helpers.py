"""Small modality-free stand-ins: vector "images", an encoder on them, a DataBundle with a pool."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.semi.pool import UnlabelledPool


class VecEncoder(nn.Module):
    """``{"global": W x}`` (identity-initialised when square), no BatchNorm: outputs are deterministic."""

    def __init__(self, dim: int = 8, out_dim: int | None = None) -> None:
        super().__init__()
        self.out_dim = out_dim or dim
        self.net = nn.Linear(dim, self.out_dim, bias=False)
        if self.out_dim == dim:
            with torch.no_grad():
                self.net.weight.copy_(torch.eye(dim))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"global": self.net(x)}


class Vectors(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        self.x, self.y = x, y
        self.targets = y.tolist() if y is not None else []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        item = {"input": self.x[i], "index": i}
        if self.y is not None:
            item["label"] = int(self.y[i])
        return item


def clusters(
    n_per: int, dim: int = 16, spread: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian clusters around ``4 e_0`` and ``4 e_1``; labels 0 / 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(2, dim)
    centres[0, 0] = centres[1, 1] = 4.0
    y = torch.arange(2 * n_per) % 2
    return centres[y] + spread * torch.randn(2 * n_per, dim, generator=g), y


def far_points(n: int, dim: int = 16, seed: int = 1) -> torch.Tensor:
    """Points far from both clusters (and from their directions): around 6 e_k, k >= 2."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(n, dim, generator=g)
    x[torch.arange(n), 2 + torch.arange(n) % (dim - 2)] += 6.0
    return x


def bundle(
    pool: torch.Tensor, labelled: torch.Tensor, labels: torch.Tensor, num_classes: int = 2
) -> DataBundle:
    return DataBundle(
        pretrain=Vectors(pool),
        eval_train=Vectors(labelled, labels),
        eval_test=Vectors(labelled, labels),
        num_classes=num_classes,
        extras=(UnlabelledPool(Vectors(pool)),),
    )
