"""What every two-view (Siamese) method shares: the online network, the symmetric loss, the EMA target.

Two augmented views ``x1, x2`` of each sample pass through an encoder ``f`` and a projector ``g``
(and, in BYOL-like methods, a predictor ``q``). The methods differ in what the projections are compared
with, and each lives in its own file under :mod:`mmssl.core.methods`:

============  ======================================  ==========================================
method        keys / targets                          objective
============  ======================================  ==========================================
SimCLR        the other view, same network            NT-Xent over in-batch negatives (eq. 1)
MoCo          queue / in-batch / memory-bank source   InfoNCE (He et al. 2020, eq. 1)
BYOL          EMA target network                      ``2 - 2 cos(q(z1), z'2)`` (Grill et al. eq. 2)
============  ======================================  ==========================================

A new two-view method subclasses :class:`TwoViewMethod`, builds its heads with ``super().__init__``
and either implements :meth:`~TwoViewMethod.pair_loss` (one direction of the symmetric loss between a
prediction and a stop-gradient target, e.g. SimSiam, BYOL) or overrides ``forward`` (contrastive losses).
Assigning ``self.teacher`` a :class:`~mmssl.core.target.TargetNetwork` makes the targets come from it;
it then follows the online network after every optimiser step.

The representation used downstream is the encoder's ``global`` output, before the projector.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.heads import PredictionHead, ProjectionHead
from mmssl.core.method import Method
from mmssl.core.target import TargetNetwork
from mmssl.data.keys import VIEWS
from mmssl.errors import ConfigError


def view_pair(batch: dict[str, Any], method: str) -> tuple[Tensor, Tensor]:
    """The batch's two views; a config error naming the option when the data gives more (multi-crop's
    small views)."""
    views = batch[VIEWS]
    if len(views) != 2:
        raise ConfigError(
            f"{method} takes two views per sample, the data gives {len(views)}: multi-crop "
            "(data.view_options.small_crops) needs a method that takes more views, such as simclr"
        )
    return views[0], views[1]


class TwoViewMethod(Method):
    """Base of the two-view methods: encoder + projector (+ predictor), an optional EMA target.

    Args:
        encoder: backbone returning ``{"global": [B, D]}``; its ``out_dim`` sizes the projector.
        projector_hidden / projector_dim / projector_layers: the :class:`ProjectionHead`.
        predictor_hidden: hidden width of a :class:`PredictionHead` on the online side (BYOL, SimSiam);
            None for no predictor (the prediction is then the projection).
    """

    consumes = frozenset({VIEWS})

    teacher: TargetNetwork | None

    def __init__(
        self,
        encoder: nn.Module,
        *,
        projector_hidden: int = 512,
        projector_dim: int = 128,
        projector_layers: int = 2,
        predictor_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = ProjectionHead(
            encoder.out_dim, projector_hidden, projector_dim, num_layers=projector_layers
        )
        self.predictor = (
            PredictionHead(projector_dim, predictor_hidden, projector_dim)
            if predictor_hidden is not None
            else None
        )
        self.teacher = None

    def online(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(projection z, prediction p or z) of the online network."""
        z = self.projector(self.encoder(x)["global"])
        return z, (self.predictor(z) if self.predictor is not None else z)

    def pair_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """One direction of the symmetric loss: a view's online prediction against the other view's
        target (no gradient flows into the target)."""
        raise NotImplementedError(f"{type(self).__name__} must implement pair_loss(p, z) or forward(batch)")

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``(pair_loss(p1, t2) + pair_loss(p2, t1)) / 2`` (e.g. BYOL eq. 2 and after, SimSiam eq. 2).

        The target ``t`` of a view is the target network's projection when there is one (computed right
        after the other view's prediction, view 1 first), else the view's online projection.
        """
        x1, x2 = view_pair(batch, type(self).__name__)
        if self.teacher is not None:
            first = self.pair_loss(self.online(x1)[1], self.teacher(x2))
            return {"loss": 0.5 * (first + self.pair_loss(self.online(x2)[1], self.teacher(x1)))}
        (z1, p1), (z2, p2) = self.online(x1), self.online(x2)
        return {"loss": 0.5 * (self.pair_loss(p1, z2) + self.pair_loss(p2, z1))}

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        if self.teacher is not None:
            self.teacher.follow(self.encoder, self.projector, step, total_steps)
