"""Regression losses between a prediction and a stop-gradient target (no negatives).

BYOL (Grill et al. 2020, eq. 2): ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, with z from the target
network and no gradient into it. SimSiam (Chen & He 2021, eq. 1): ``-cos(p, stopgrad(z))``.
Symmetrisation over the two views is left to the method (call the loss twice with views swapped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _cosine(p: Tensor, z: Tensor) -> Tensor:
    # fp32: cosines near 1 are where the signal lives at the end of training.
    with torch.autocast(device_type=p.device.type, enabled=False):
        return F.cosine_similarity(p.float(), z.detach().float(), dim=-1)


def byol_regression(p: Tensor, z: Tensor) -> Tensor:
    """Mean over the batch of ``2 - 2 cos(p, z.detach())`` for p, z [B, D] (0 aligned, 4 opposite)."""
    return (2.0 - 2.0 * _cosine(p, z)).mean()


def simsiam_loss(p: Tensor, z: Tensor) -> Tensor:
    """Mean over the batch of ``-cos(p, z.detach())`` for p, z [B, D]."""
    return -_cosine(p, z).mean()
