"""Symmetric InfoNCE between two sets of paired embeddings, with CLIP's learnable temperature.

For N pairs ``(a_i, b_i)`` (an image and its sound, a caption and its picture ...), L2-normalised,
with similarities ``s_ij = a_i . b_j / t`` (CLIP, Radford et al. 2021, Fig. 3 pseudo-code)::

    L_a->b = -1/N sum_i log( exp(s_ii) / sum_j exp(s_ij) )     (each a_i picks its b among all b)
    L_b->a = -1/N sum_j log( exp(s_jj) / sum_i exp(s_ij) )     (each b_j picks its a among all a)
    L      = (L_a->b + L_b->a) / 2

Each direction is the core :func:`~mmssl.core.losses.info_nce.info_nce` with in-batch negatives, so
with ``gather=True`` the other processes' embeddings are negatives with exact gradients, and the
loss averaged over processes equals the single-process loss on the global batch.

CLIP learns the temperature: the parameter is the log of the logit scale ``1/t`` (initialised at
``log(1/0.07)``), and it is clipped so the logits are never scaled by more than 100
(:class:`LearnableTemperature`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmssl.core.losses.info_nce import info_nce


def symmetric_info_nce(
    a: Tensor, b: Tensor, temperature: float | Tensor = 0.07, gather: bool = False
) -> Tensor:
    """``(InfoNCE(a -> b) + InfoNCE(b -> a)) / 2`` over paired rows of ``a`` [B, D] and ``b`` [B, D].

    ``temperature`` may be a tensor (e.g. from :class:`LearnableTemperature`); the gradient then
    reaches it. ``gather``: negatives from every process (the positive of row i on rank r sits at
    column ``r*B + i`` of the gathered batch).
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"symmetric InfoNCE needs paired rows, got {a.shape[0]} and {b.shape[0]}")
    return 0.5 * (
        info_nce(a, b, temperature=temperature, gather=gather)
        + info_nce(b, a, temperature=temperature, gather=gather)
    )


class LearnableTemperature(nn.Module):
    """CLIP's temperature: ``log(1/t)`` is learned and kept in ``[log(1/max), log(1/min)]``.

    Learning the log makes steps multiplicative and keeps ``t > 0``. ``forward()`` returns
    ``t = exp(-clamp(log_scale))``, so the value used is always inside the bounds; call
    :meth:`clamp_` after each optimiser step (as CLIP does) so the parameter itself never drifts
    past a bound. The clamp in ``forward`` passes the gradient straight through (``torch.clamp``
    would give zero gradient on the bound, where :meth:`clamp_` leaves the parameter, and the
    temperature could never move back inside). The default ``min_temperature=0.01`` is CLIP's
    "logits scaled by at most 100". With ``learnable=False`` the temperature is a fixed buffer.
    """

    def __init__(
        self,
        init: float = 0.07,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= init <= max_temperature:
            raise ValueError(
                "temperatures must satisfy 0 < min_temperature <= init <= max_temperature, got "
                f"{min_temperature}, {init}, {max_temperature}"
            )
        value = torch.tensor(math.log(1.0 / init))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)
        self.min_log_scale = math.log(1.0 / max_temperature)
        self.max_log_scale = math.log(1.0 / min_temperature)

    def forward(self) -> Tensor:
        """The current temperature (a 0-dim float32 tensor carrying the gradient)."""
        log_scale = self.log_scale.float()
        clamped = log_scale.clamp(self.min_log_scale, self.max_log_scale)
        return torch.exp(-(log_scale + (clamped - log_scale).detach()))  # clamped value, identity gradient

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clip the parameter into its bounds in place."""
        self.log_scale.clamp_(self.min_log_scale, self.max_log_scale)

    def extra_repr(self) -> str:
        t_min, t_max = math.exp(-self.max_log_scale), math.exp(-self.min_log_scale)
        return f"min={t_min:.3g}, max={t_max:.3g}, learnable={isinstance(self.log_scale, nn.Parameter)}"
