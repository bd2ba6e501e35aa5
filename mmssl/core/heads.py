"""MLP heads put on top of an encoder during pretraining and dropped afterwards.

SimCLR (Chen et al. 2020) shows the representation *before* the projection head transfers better, so
methods evaluate ``encoder`` outputs, never these heads.
"""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """``(Linear-BN-ReLU) x (num_layers - 1)`` followed by ``Linear`` (and an optional final BN).

    SimCLR v1 uses 2 layers, SimCLR v2 3; MoCo v2 is 2 layers without BN (``batch_norm=False``);
    BYOL's projector is 2 layers with BN. ``last_bn`` appends a BatchNorm without affine parameters
    on the output (SimCLR v2 / MoCo v3 style). Linear layers followed by BN have no bias (BN's shift
    makes it redundant).

    Accepts [B, in_dim] or token features [B, N, in_dim] (BN statistics then span all tokens).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_bn: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_dim)


class PredictionHead(ProjectionHead):
    """BYOL / SimSiam predictor: ``Linear-BN-ReLU-Linear`` (the online branch only)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True, last_bn=False)
