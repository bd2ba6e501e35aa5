"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017): consistency with an EMA of the student's weights.

The teacher's weights are an exponential moving average of the student's, ``theta' <- a theta' +
(1 - a) theta`` with ``a = min(1 - 1/(k + 1), alpha)`` (the reference code's warm start), ``alpha``
0.99 during the ramp-up and 0.999 afterwards. Student and teacher see two independently augmented
copies of each unlabelled input (``u_strong`` / ``u_weak``; with ``semi_shapes`` use
``data.strong: weak`` for two noisy copies as in the paper)::

    loss = CE(x_l) + lambda_u * w(t) * mean_{u,c} (softmax(f(u'))_c - softmax(f'(u''))_c)^2
    w(t) = exp(-5 (1 - t)^2),  t = progress / rampup (sigmoid ramp-up)

The teacher is the model that is evaluated (the paper reports it; it is the better of the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.semi.base import SemiMethod
from mmssl.semi.keys import U_STRONG, U_WEAK
from mmssl.semi.ood import OODGuard
from mmssl.semi.pseudo_label import sigmoid_rampup, softmax_mse


class MeanTeacher(SemiMethod):
    """Mean Teacher; arguments as :func:`mean_teacher`."""

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({U_WEAK, U_STRONG})

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        data: DataBundle | None = None,
        *,
        rampup: float = 0.3,
        ema_decay: float = 0.999,
        ema_decay_rampup: float = 0.99,
        **kw,
    ) -> None:
        super().__init__(encoder, num_classes, data, ema_decay=ema_decay, **kw)
        self.rampup, self.ema_decay_rampup = rampup, ema_decay_rampup

    def ema_momentum(self, step: int, total_steps: int) -> float:
        alpha = self.ema_decay_rampup if step / max(total_steps, 1) < self.rampup else self.ema_decay
        return min(1.0 - 1.0 / (step + 1), float(alpha))

    def consistency_weight(self) -> float:
        return self.unlabelled_weight * sigmoid_rampup(float(self.progress), self.rampup)

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x_l = batch["x_l"]
        u_student = self.flat_unlabelled(batch, "u_strong")
        u_teacher = self.flat_unlabelled(batch, "u_weak")
        logits = self.logits(torch.cat([x_l, u_student]))
        loss_x = self.supervised_loss(batch, logits[: x_l.shape[0]])
        with torch.no_grad():  # the teacher gets no gradient; it runs in train mode (batch statistics)
            teacher_logits = self.classify(self.ema.module, u_teacher)
        keep = self.keep_weights(batch["u_index"])
        per_sample = softmax_mse(logits[x_l.shape[0] :], teacher_logits, reduction="none")
        loss_u = (per_sample * keep).mean()
        weight = self.consistency_weight()
        return {
            "loss": loss_x + weight * loss_u,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "consistency_weight": torch.tensor(weight),
        }


def mean_teacher(
    encoder: nn.Module,
    data: DataBundle,
    unlabelled_weight: float = 100.0,
    rampup: float = 0.3,
    ema_decay: float = 0.999,
    ema_decay_rampup: float = 0.99,
    ood_guard: str = "none",
    ood_threshold: float | None = None,
    ood_quantile: float = 0.95,
    ood_k: int = 5,
    ood_start: float = 0.2,
    ood_every: int = 0,
    pool_batch_size: int = 256,
) -> MeanTeacher:
    """Mean Teacher. ``unlabelled_weight``: the maximal consistency weight (on the mean squared
    difference of softmaxes, as the reference code's CIFAR-10 setting of 100; 0 = supervised only).
    ``rampup``: fraction of training for the sigmoid ramp-up. ``ema_decay`` / ``ema_decay_rampup``: the
    teacher's EMA after / during the ramp-up. ``ood_guard`` etc. as :func:`mmssl.semi.fixmatch.fixmatch`.
    """
    return MeanTeacher(
        encoder,
        data.num_classes,
        data,
        rampup=rampup,
        ema_decay=ema_decay,
        ema_decay_rampup=ema_decay_rampup,
        unlabelled_weight=unlabelled_weight,
        guard=OODGuard(ood_guard, ood_threshold, ood_quantile, k=ood_k),
        ood_start=ood_start,
        ood_every=ood_every,
        pool_batch_size=pool_batch_size,
    )
