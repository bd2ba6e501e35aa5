"""Entropy minimisation (Grandvalet & Bengio, NeurIPS 2004): confident predictions on unlabelled data.

    loss = CE(x_l) + lambda * w(t) * mean_u H(p(y | u)),   H(p) = -sum_c p_c log p_c

The entropy term pushes decision boundaries away from dense regions of unlabelled data (the cluster
assumption). Minimised from the first step it also makes random early predictions confident, so the
weight follows the sigmoid ramp-up ``w(t) = exp(-5 (1 - t)^2)`` over the first ``rampup`` of training
(as in Oliver et al. 2018's comparison); ``rampup = 0`` applies it fully from the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.semi.base import SemiMethod
from mmssl.semi.ood import OODGuard
from mmssl.semi.pseudo_label import entropy, sigmoid_rampup


class EntropyMinimisation(SemiMethod):
    """Entropy minimisation; arguments as :func:`entropy_min`."""

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({str(options.get("unlabelled_view", "u_weak"))})

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        data: DataBundle | None = None,
        *,
        rampup: float = 0.3,
        unlabelled_view: str = "u_weak",
        **kw,
    ) -> None:
        super().__init__(encoder, num_classes, data, **kw)
        self.rampup, self.unlabelled_view = rampup, unlabelled_view

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x_l = batch["x_l"]
        u = self.flat_unlabelled(batch, self.unlabelled_view)
        logits = self.logits(torch.cat([x_l, u]))
        loss_x = self.supervised_loss(batch, logits[: x_l.shape[0]])
        loss_u = (entropy(logits[x_l.shape[0] :]) * self.keep_weights(batch["u_index"])).mean()
        weight = self.unlabelled_weight * sigmoid_rampup(float(self.progress), self.rampup)
        return {
            "loss": loss_x + weight * loss_u,
            "loss_x": loss_x.detach(),
            "entropy_u": loss_u.detach(),
            "entropy_weight": torch.tensor(weight),
        }


def entropy_min(
    encoder: nn.Module,
    data: DataBundle,
    unlabelled_weight: float = 0.1,
    rampup: float = 0.3,
    unlabelled_view: str = "weak",
    ema_decay: float | None = None,
    ood_guard: str = "none",
    ood_threshold: float | None = None,
    ood_quantile: float = 0.95,
    ood_k: int = 5,
    ood_start: float = 0.2,
    ood_every: int = 0,
    pool_batch_size: int = 256,
) -> EntropyMinimisation:
    """Entropy minimisation. ``unlabelled_weight``: lambda on the mean entropy of unlabelled predictions
    (0 = supervised only); ``rampup``: fraction of training for its sigmoid ramp-up;
    ``unlabelled_view``: ``weak`` or ``strong``; ``ema_decay``: evaluate an EMA copy (None: the
    student). ``ood_guard`` etc. as :func:`mmssl.semi.fixmatch.fixmatch`.
    """
    views = {"weak": "u_weak", "strong": "u_strong"}
    if unlabelled_view not in views:
        raise ValueError(f"method.unlabelled_view must be one of {', '.join(views)}, got '{unlabelled_view}'")
    return EntropyMinimisation(
        encoder,
        data.num_classes,
        data,
        rampup=rampup,
        unlabelled_view=views[unlabelled_view],
        unlabelled_weight=unlabelled_weight,
        ema_decay=ema_decay,
        guard=OODGuard(ood_guard, ood_threshold, ood_quantile, k=ood_k),
        ood_start=ood_start,
        ood_every=ood_every,
        pool_batch_size=pool_batch_size,
    )
