"""NT-Xent over V >= 2 views of each sample (multi-crop SimCLR).

SimCLR's loss (Chen et al. 2020, eq. 1) is defined per positive pair ``(i, j)`` and averaged over all
positive pairs. With V views of each of N samples every ordered pair of two different views of one sample
is a positive pair, and every other view in the batch is a negative::

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )
    L = 1 / (V N (V - 1)) * sum_i sum_{j in P(i)} l(i, j)

``P(i)``: the V - 1 other views of anchor ``i``'s sample. This is the supervised-contrastive loss
``L_out`` (Khosla et al., NeurIPS 2020, eq. 2) with the sample identity as the label, and for V = 2 it is
exactly :func:`~mmssl.core.losses.nt_xent`. It is how multi-crop (Caron et al. 2020, "SwAV", Sec. 3.2)
applies to SimCLR: the low-resolution views are further positives of their sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmssl.core.distributed import gather_with_grad, get_rank


def multi_view_nt_xent(views: Sequence[Tensor], temperature: float = 0.5, gather: bool = False) -> Tensor:
    """The loss above over ``views`` (V tensors [N, D], row n of each is sample n), mean over all
    V N (V - 1) positive pairs.

    With ``gather=True`` the views of every process are negatives (gathered with exact gradients), as in
    :func:`~mmssl.core.losses.nt_xent`. Logits and softmax are float32, also under autocast.
    """
    if len(views) < 2:
        raise ValueError(f"multi_view_nt_xent needs at least two views, got {len(views)}")
    n = views[0].shape[0]
    if any(v.shape[0] != n for v in views):
        raise ValueError(f"every view needs the same number of samples, got {[v.shape[0] for v in views]}")
    num_views = len(views)
    with torch.autocast(device_type=views[0].device.type, enabled=False):
        local = [F.normalize(v.float(), dim=1) for v in views]
        gathered = [gather_with_grad(a) for a in local] if gather else local
        offset = get_rank() * n if gather else 0
        total = gathered[0].shape[0]  # samples over all processes
        anchors = torch.cat(local, dim=0)  # [V N, D], row v N + i
        candidates = torch.cat(gathered, dim=0)  # [V total, D], column v total + (offset + i)
        logits = anchors @ candidates.t() / temperature

        device = anchors.device
        sample = torch.arange(n, device=device).repeat(num_views) + offset  # anchor row -> sample id
        view = torch.arange(num_views, device=device).repeat_interleave(n)  # anchor row -> view
        rows = torch.arange(num_views * n, device=device)
        logits[rows, view * total + sample] = float("-inf")  # the anchor itself leaves the denominator
        log_prob = F.log_softmax(logits, dim=1)

        # Columns of the anchor's positives: its sample in every other view.
        others = torch.arange(num_views, device=device).expand(num_views * n, num_views)
        others = others[others != view[:, None]].view(num_views * n, num_views - 1)
        positive_cols = others * total + sample[:, None]
        # Every anchor has V - 1 positives, so the mean over all pairs is the mean over positive slots of
        # the per-slot cross-entropy (for V = 2 exactly nt_xent's F.cross_entropy, bit for bit).
        return sum(F.nll_loss(log_prob, cols) for cols in positive_cols.unbind(1)) / (num_views - 1)
