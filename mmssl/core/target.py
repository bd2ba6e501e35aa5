"""The slowly moving copy of encoder + projector that makes a two-view method's targets.

BYOL (Grill et al. 2020, Sec. 3.1) calls it the *target network*: parameters
``xi <- tau xi + (1 - tau) theta`` after every step, tau following :func:`cosine_momentum` from
``tau_base`` to 1. MoCo (He et al. 2020, Sec. 3.2) calls it the *momentum (key) encoder*: the same
update with a constant tau (``momentum_base == momentum_final``).

Only encoder and projector are copied, never BYOL's predictor (Sec. 3.1). Keys may be computed with
MoCo's *shuffling BN* (Sec. 3.3): the batch is permuted and split into groups that pass through
BatchNorm separately, so a query and its key never share batch statistics; here done within a process.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmssl.core.momentum import EMATeacher, cosine_momentum


class TargetNetwork(EMATeacher):
    """EMA copy ``{"encoder", "projector"}`` of the online network, producing projections without grad.

    Args:
        encoder: online encoder returning ``{"global": [B, D]}``.
        projector: online projection head.
        momentum_base / momentum_final: EMA coefficient at the first and the last step (cosine schedule
            in between); equal values give a constant momentum.
        shuffle_bn_groups: BatchNorm of the target sees the shuffled batch in this many groups (only
            when the batch has at least two samples per group; else one group).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        *,
        momentum_base: float,
        momentum_final: float,
        shuffle_bn_groups: int = 1,
    ) -> None:
        super().__init__(nn.ModuleDict({"encoder": encoder, "projector": projector}))
        self.momentum_base, self.momentum_final = momentum_base, momentum_final
        self.shuffle_bn_groups = shuffle_bn_groups

    def project(self, x: Tensor) -> Tensor:
        """Projection ``g'(f'(x))`` of one group of inputs."""
        return self.module["projector"](self.module["encoder"](x)["global"])

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Target projections [B, dim] of ``x``, with BatchNorm shuffled across groups."""
        groups = self.shuffle_bn_groups if x.shape[0] >= 2 * self.shuffle_bn_groups else 1
        if groups > 1:
            perm = torch.randperm(x.shape[0], device=x.device)
            chunks = [self.project(c) for c in x[perm].chunk(groups)]
            out = torch.empty_like(torch.cat(chunks))
            out[perm] = torch.cat(chunks)
            return out
        return self.project(x)

    @torch.no_grad()
    def follow(self, encoder: nn.Module, projector: nn.Module, step: int, total_steps: int) -> None:
        """One EMA step towards the online encoder + projector, momentum from the schedule at ``step``."""
        momentum = cosine_momentum(step, total_steps, base=self.momentum_base, final=self.momentum_final)
        self.update(nn.ModuleDict({"encoder": encoder, "projector": projector}), momentum)
