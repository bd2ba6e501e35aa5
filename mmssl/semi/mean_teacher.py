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
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.option_markers import WHOLE_SECTION
from mmssl.semi.base import OnlineMethod
from mmssl.semi.keys import U_INDEX, U_STRONG, U_WEAK
from mmssl.semi.options import OnlineOptions
from mmssl.semi.pseudo_label import softmax_mse


@dataclass(frozen=True)
class MeanTeacherOptions(OnlineOptions):
    """Mean Teacher's ``method`` keys. ``unlabelled_weight``: the maximal consistency weight (on the
    mean squared difference of softmaxes, as the reference code's CIFAR-10 setting of 100; 0 =
    supervised only). ``rampup``: fraction of training for the sigmoid ramp-up. ``ema_decay`` /
    ``ema_decay_rampup``: the teacher's EMA after / during the ramp-up. ``ood``: as FixMatch's.
    """

    unlabelled_weight: float = 100.0
    rampup: float = 0.3
    ema_decay: float = 0.999
    ema_decay_rampup: float = 0.99


class MeanTeacher(OnlineMethod):
    """Mean Teacher; options: :class:`MeanTeacherOptions`."""

    options: MeanTeacherOptions

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle,
        options: Annotated[MeanTeacherOptions, WHOLE_SECTION] = MeanTeacherOptions(),
    ) -> None:
        super().__init__(encoder, data, options)

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({U_WEAK, U_STRONG})

    def ema_momentum(self, step: int, total_steps: int) -> float:
        opts = self.options
        alpha = opts.ema_decay_rampup if step / max(total_steps, 1) < opts.rampup else opts.ema_decay
        return min(1.0 - 1.0 / (step + 1), float(alpha))

    def consistency_weight(self) -> float:
        return self.ramped_weight(self.options.rampup)

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u_student = self.flat_unlabelled(batch, U_STRONG)
        u_teacher = self.flat_unlabelled(batch, U_WEAK)
        loss_x, (logits_u,) = self.joint_forward(batch, u_student)
        with torch.no_grad():  # the teacher gets no gradient; it runs in train mode (batch statistics)
            teacher_logits = self.classify(self.ema.module, u_teacher)
        keep = self.keep_weights(batch[U_INDEX])
        per_sample = softmax_mse(logits_u, teacher_logits, reduction="none")
        loss_u = (per_sample * keep).mean()
        weight = self.consistency_weight()
        return {
            "loss": loss_x + weight * loss_u,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "consistency_weight": torch.tensor(weight),
        }
