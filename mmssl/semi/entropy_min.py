"""Entropy minimisation (Grandvalet & Bengio, NeurIPS 2004): confident predictions on unlabelled data.

    loss = CE(x_l) + lambda * w(t) * mean_u H(p(y | u)),   H(p) = -sum_c p_c log p_c

The entropy term pushes decision boundaries away from dense regions of unlabelled data (the cluster
assumption). Minimised from the first step it also makes random early predictions confident, so the
weight follows the sigmoid ramp-up ``w(t) = exp(-5 (1 - t)^2)`` over the first ``rampup`` of training
(as in Oliver et al. 2018's comparison); ``rampup = 0`` applies it fully from the start.
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
from mmssl.semi.keys import U_INDEX
from mmssl.semi.options import OnlineOptions, view_key
from mmssl.semi.pseudo_label import entropy


@dataclass(frozen=True)
class EntropyMinOptions(OnlineOptions):
    """Entropy minimisation's ``method`` keys. ``unlabelled_weight``: lambda on the mean entropy of
    unlabelled predictions (0 = supervised only); ``rampup``: fraction of training for its sigmoid
    ramp-up; ``unlabelled_view``: ``weak`` or ``strong``; ``ema_decay``: evaluate an EMA copy (None:
    the student). ``ood``: as FixMatch's.
    """

    unlabelled_weight: float = 0.1
    rampup: float = 0.3
    unlabelled_view: str = "weak"

    def __post_init__(self) -> None:
        view_key(self.unlabelled_view, "unlabelled_view")


class EntropyMinimisation(OnlineMethod):
    """Entropy minimisation; options: :class:`EntropyMinOptions`."""

    options: EntropyMinOptions

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({view_key(str(options.get("unlabelled_view", "weak")), "method.unlabelled_view")})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle,
        options: Annotated[EntropyMinOptions, WHOLE_SECTION] = EntropyMinOptions(),
    ) -> None:
        super().__init__(encoder, data, options)
        self.unlabelled_view = view_key(options.unlabelled_view, "method.unlabelled_view")

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u = self.flat_unlabelled(batch, self.unlabelled_view)
        loss_x, (logits_u,) = self.joint_forward(batch, u)
        loss_u = (entropy(logits_u) * self.keep_weights(batch[U_INDEX])).mean()
        weight = self.ramped_weight(self.options.rampup)
        return {
            "loss": loss_x + weight * loss_u,
            "loss_x": loss_x.detach(),
            "entropy_u": loss_u.detach(),
            "entropy_weight": torch.tensor(weight),
        }
