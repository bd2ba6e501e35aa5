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
from dataclasses import dataclass
from typing import Annotated, Any

import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.option_markers import WHOLE_SECTION
from mmssl.semi.base import OnlineMethod
from mmssl.semi.keys import U_INDEX, U_STRONG, U_WEAK
from mmssl.semi.options import OnlineOptions
from mmssl.semi.pseudo_label import confidence_mask


@dataclass(frozen=True)
class FixMatchOptions(OnlineOptions):
    """FixMatch's ``method`` keys. ``unlabelled_weight``: lambda_u (1 in the paper; 0 = supervised
    only). ``threshold``: tau (0.95). ``temperature``: sharpening of the weak-view distribution before
    the argmax (1 = none). ``ema_decay``: decay of the evaluated EMA model (0.999 in the paper; shorter
    runs want ~0.99). ``ood``: the guard scores the pool with the EMA model at ``ood.start`` of training
    (the unlabelled loss waits for it) and every ``ood.every`` steps (:mod:`mmssl.semi.options`).
    """

    threshold: float = 0.95
    temperature: float = 1.0
    ema_decay: float | None = 0.999


class FixMatch(OnlineMethod):
    """FixMatch; options: :class:`FixMatchOptions`."""

    options: FixMatchOptions

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle,
        options: Annotated[FixMatchOptions, WHOLE_SECTION] = FixMatchOptions(),
    ) -> None:
        super().__init__(encoder, data, options)

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({U_WEAK, U_STRONG})

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u_w = self.flat_unlabelled(batch, U_WEAK)
        u_s = self.flat_unlabelled(batch, U_STRONG)
        loss_x, (logits_w, logits_s) = self.joint_forward(batch, u_w, u_s)
        probs = F.softmax(logits_w.detach().float() / self.options.temperature, dim=1)
        pseudo = probs.argmax(dim=1)
        mask = confidence_mask(probs, self.options.threshold) * self.keep_weights(batch[U_INDEX])
        loss_u = (F.cross_entropy(logits_s.float(), pseudo, reduction="none") * mask).mean()
        return {
            "loss": loss_x + self.unlabelled_weight * loss_u,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "mask_rate": mask.mean(),
        }
