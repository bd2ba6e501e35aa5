"""FixMatch (Sohn et al., NeurIPS 2020): confident weak-view pseudo-labels supervise the strong view.

For a batch of B labelled and mu*B unlabelled images (eq. 2-4 of the paper)::

    l_s = 1/B sum_b CE(y_b, p(y | weak(x_b)))
    q_b = p(y | weak(u_b))                              (no gradient)
    l_u = 1/(mu B) sum_b 1[max q_b >= tau] CE(argmax q_b, p(y | strong(u_b)))
    loss = l_s + lambda_u l_u                            (tau = 0.95, lambda_u = 1, mu = 7)

All three parts go through the network in one forward (the reference implementations concatenate
them so BatchNorm sees the whole batch). The evaluated model is an EMA of the weights (decay 0.999 in
the paper). The paper's optimiser is SGD-Nesterov, lr 0.03, momentum 0.9, lr ``cos(7 pi k / 16 K)``:
set in the recipe's ``train`` section (the trainer's cosine schedule with ``min_lr_ratio`` ~0.2 is
close to that curve's end point).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.semi.base import SemiMethod
from mmssl.semi.keys import U_STRONG, U_WEAK
from mmssl.semi.ood import OODGuard
from mmssl.semi.pseudo_label import confidence_mask


class FixMatch(SemiMethod):
    """FixMatch; arguments as :func:`fixmatch`."""

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({U_WEAK, U_STRONG})

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        data: DataBundle | None = None,
        *,
        threshold: float = 0.95,
        temperature: float = 1.0,
        **kw,
    ) -> None:
        super().__init__(encoder, num_classes, data, **kw)
        self.threshold, self.temperature = threshold, temperature

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x_l = batch["x_l"]
        u_w = self.flat_unlabelled(batch, "u_weak")
        u_s = self.flat_unlabelled(batch, "u_strong")
        b, n = x_l.shape[0], u_w.shape[0]
        logits = self.logits(torch.cat([x_l, u_w, u_s]))
        logits_l, logits_w, logits_s = logits[:b], logits[b : b + n], logits[b + n :]
        loss_x = self.supervised_loss(batch, logits_l)
        probs = F.softmax(logits_w.detach().float() / self.temperature, dim=1)
        pseudo = probs.argmax(dim=1)
        mask = confidence_mask(probs, self.threshold) * self.keep_weights(batch["u_index"])
        loss_u = (F.cross_entropy(logits_s.float(), pseudo, reduction="none") * mask).mean()
        return {
            "loss": loss_x + self.unlabelled_weight * loss_u,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "mask_rate": mask.mean(),
        }


def fixmatch(
    encoder: nn.Module,
    data: DataBundle,
    unlabelled_weight: float = 1.0,
    threshold: float = 0.95,
    temperature: float = 1.0,
    ema_decay: float = 0.999,
    ood_guard: str = "none",
    ood_threshold: float | None = None,
    ood_quantile: float = 0.95,
    ood_k: int = 5,
    ood_start: float = 0.2,
    ood_every: int = 0,
    pool_batch_size: int = 256,
) -> FixMatch:
    """FixMatch. ``unlabelled_weight``: lambda_u (1 in the paper; 0 = supervised only). ``threshold``:
    tau (0.95). ``temperature``: sharpening of the weak-view distribution before the argmax (1 = none).
    ``ema_decay``: decay of the evaluated EMA model (0.999 in the paper; shorter runs want ~0.99).
    ``ood_guard``: ``none`` | ``max_softmax`` | ``energy`` | ``knn``; the pool is scored with the EMA
    model at ``ood_start`` of training (the unlabelled loss waits for it) and every ``ood_every`` steps;
    threshold ``ood_threshold`` (absolute) or ``ood_quantile`` of labelled scores.
    """
    return FixMatch(
        encoder,
        data.num_classes,
        data,
        threshold=threshold,
        temperature=temperature,
        unlabelled_weight=unlabelled_weight,
        ema_decay=ema_decay,
        guard=OODGuard(ood_guard, ood_threshold, ood_quantile, k=ood_k),
        ood_start=ood_start,
        ood_every=ood_every,
        pool_batch_size=pool_batch_size,
    )
