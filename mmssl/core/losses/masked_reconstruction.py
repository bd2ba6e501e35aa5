"""Reconstruction loss on masked tokens only (MAE, He et al. 2022, Sec. 3).

``L = sum_{b,n} m_bn * mean_p (pred_bnp - target_bnp)^2 / sum_{b,n} m_bn`` with m = 1 on masked tokens.
With ``norm_target`` each target token is first normalised by its own mean and variance over its P
values (MAE's ``norm_pix_loss``; unbiased variance as in the reference), which sharpens local contrast
and improves the representation; the prediction is then not directly an image.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_reconstruction_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    norm_target: bool = False,
    eps: float = 1e-6,
) -> Tensor:
    """Mean squared error per token, averaged over the masked tokens.

    Args:
        pred: [B, N, P] predicted token values.
        target: [B, N, P] true token values (no gradient is taken through them).
        mask: [B, N], 1 (or True) where the token was masked; only those count.
        norm_target: normalise each target token by its own mean/variance first.
        eps: added to the variance before the square root.

    Returns:
        scalar float32 loss (0 when nothing is masked).
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(
            f"expected pred/target [B, N, P] and mask [B, N], got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    with torch.autocast(device_type=pred.device.type, enabled=False):
        target = target.detach().float()
        if norm_target:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + eps).sqrt()
        per_token = (pred.float() - target).pow(2).mean(dim=-1)  # [B, N]
        m = mask.float()
        return (per_token * m).sum() / m.sum().clamp(min=1.0)
