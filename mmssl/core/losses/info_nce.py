"""InfoNCE and NT-Xent: softmax cross-entropy over cosine similarities.

InfoNCE (Oord et al. 2018; MoCo, He et al. 2020, eq. 1), for a query ``q`` with positive key ``k+``
and negatives ``k-``::

    L_q = -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_{k-} exp(q.k- / t)) )

NT-Xent (SimCLR, Chen et al. 2020, eq. 1) is the same loss over the 2N views of a batch: each view's
positive is the other view of its sample, the remaining 2N-2 views are the negatives, and the anchor's
similarity with itself is left out of the denominator. It is averaged over all 2N anchors, i.e. over
both directions.

Both losses L2-normalise their inputs and compute logits and softmax in float32, also under autocast:
with t = 0.07 the logits reach ~14 and half precision would lose the small differences that carry
the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmssl.core.distributed import gather_with_grad, get_rank
from mmssl.core.losses.multi_view_nt_xent import multi_view_nt_xent


def info_nce(
    query: Tensor,
    key: Tensor,
    negatives: Tensor | None = None,
    temperature: float = 0.07,
    gather: bool = False,
) -> Tensor:
    """InfoNCE loss, mean over the queries.

    Args:
        query: [B, D] queries.
        key: [B, D] positive keys; row i is the positive of query i.
        negatives: optional [K, D] extra negatives (momentum queue or memory bank). When given, the
            logits of query i are ``[q_i.k_i, q_i.n_1 ... q_i.n_K]`` (MoCo) and ``gather`` is not used:
            a queue is already shared across processes when it is filled.
            When None, the other keys of the batch are the negatives (MoCo's "end-to-end" variant).
        temperature: softmax temperature t.
        gather: with in-batch negatives, use the keys of all processes as negatives (gathered with
            exact gradients); the positive of query i on rank r sits at column ``r*B + i``.

    Returns:
        scalar loss (float32).
    """
    with torch.autocast(device_type=query.device.type, enabled=False):
        q = F.normalize(query.float(), dim=1)
        k = F.normalize(key.float(), dim=1)
        if negatives is not None:
            n = F.normalize(negatives.float(), dim=1)
            pos = (q * k).sum(dim=1, keepdim=True)  # [B, 1]
            logits = torch.cat([pos, q @ n.t()], dim=1) / temperature  # [B, 1 + K]
            labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        else:
            offset = 0
            if gather:
                k = gather_with_grad(k)
                offset = get_rank() * q.shape[0]
            logits = q @ k.t() / temperature  # [B, B * world]
            labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, gather: bool = False) -> Tensor:
    """SimCLR's NT-Xent loss over the 2N views ``z1`` [N, D] and ``z2`` [N, D], mean over 2N anchors.

    With ``gather=True`` the views of all processes (2 * N * world in total) serve as negatives; the
    gather keeps exact gradients, so averaging this loss over processes (as DDP does for gradients)
    equals the loss on the global batch. It is :func:`~mmssl.core.losses.multi_view_nt_xent` with two
    views (the one implementation; bit for bit the former cross-entropy form).
    """
    return multi_view_nt_xent([z1, z2], temperature=temperature, gather=gather)
