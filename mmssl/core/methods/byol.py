"""BYOL (Grill et al., NeurIPS 2020): predict the EMA target network's projection of the other view.

With online projection ``z`` and prediction ``p = q(z)``, and the target network's projection ``z'`` of
the other view (no gradient), eq. 2::

    L = || p / |p| - z' / |z'| ||^2 = 2 - 2 cos(p, z')

symmetrised over the two views (averaged). The target follows the online encoder + projector with
``xi <- tau xi + (1 - tau) theta``, tau rising from ``momentum_base`` to 1 on a cosine schedule (Sec. 3.1).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmssl.core.losses import byol_regression
from mmssl.core.target import TargetNetwork
from mmssl.core.two_view import TwoViewMethod
from mmssl.data import DataBundle


class BYOL(TwoViewMethod):
    """BYOL: projector + predictor online, an EMA target network of encoder + projector."""

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        momentum_base: float = 0.996,
        projector_hidden: int = 1024,
        projector_dim: int = 256,
        predictor_hidden: int = 1024,
    ) -> None:
        super().__init__(
            encoder,
            projector_hidden=projector_hidden,
            projector_dim=projector_dim,
            predictor_hidden=predictor_hidden,
        )
        self.teacher = TargetNetwork(encoder, self.projector, momentum_base=momentum_base, momentum_final=1.0)

    def pair_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return byol_regression(prediction, target)
