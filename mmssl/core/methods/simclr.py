"""SimCLR (Chen et al., ICML 2020): NT-Xent between the projections of two views, negatives from the batch.

For the 2N projections of a batch, with ``sim(u, v) = u.v / (|u| |v|)`` and positive pair ``(i, j)``
(the two views of one sample), eq. 1::

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

averaged over all 2N anchors. With ``gather`` the views of every process are negatives, gathered with
exact gradients, so the loss equals the one on the global batch.

With multi-crop (``data.view_options.small_crops``, SwAV Sec. 3.2) the batch holds V > 2 views, the
low-resolution ones after the two full views; every other view of a sample is then a positive of it
(:func:`~mmssl.core.losses.multi_view_nt_xent`, which equals eq. 1 for two views). Each view passes the
encoder on its own, as the two views do, so batch-norm statistics stay per view.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.core.losses import multi_view_nt_xent
from mmssl.core.two_view import TwoViewMethod
from mmssl.data import DataBundle
from mmssl.data.keys import VIEWS


class SimCLR(TwoViewMethod):
    """SimCLR: encoder + ``projector_layers``-layer MLP projector, NT-Xent at ``temperature``."""

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        temperature: float = 0.5,
        projector_hidden: int = 512,
        projector_dim: int = 128,
        projector_layers: int = 2,
        gather: bool = True,
    ) -> None:
        super().__init__(
            encoder,
            projector_hidden=projector_hidden,
            projector_dim=projector_dim,
            projector_layers=projector_layers,
        )
        self.temperature, self.gather = temperature, gather

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        views = batch[VIEWS]
        projections = [self.online(x)[0] for x in views]
        return {"loss": multi_view_nt_xent(projections, temperature=self.temperature, gather=self.gather)}
