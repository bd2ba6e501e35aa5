"""Projection / prediction heads: layer layout and shapes."""

from __future__ import annotations

import torch
from torch import nn

from mmssl.core.heads import PredictionHead, ProjectionHead


def test_heads_shapes_and_layers():
    head = ProjectionHead(8, 16, 4, num_layers=3, last_bn=True)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 4)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == 3
    assert head(torch.randn(5, 8)).shape == (5, 4)
    assert head(torch.randn(2, 5, 8)).shape == (2, 5, 4)  # token features
    plain = ProjectionHead(8, 16, 4, num_layers=2, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    pred = PredictionHead(4, 32, 4)
    kinds = [type(m) for m in pred.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
