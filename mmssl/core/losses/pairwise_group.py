"""Pairwise group contrastive loss over the elements of one sample (ACD pretext).

Gadelha, RoyChowdhury et al. (ECCV 2020), "Label-Efficient Learning on Point Clouds using Approximate
Convex Decompositions": every point carries the id of the convex component it was sampled from. For
two elements i != j of the same sample with unit embeddings f_i, f_j::

    l(i, j) = 1 - cos(f_i, f_j)                 if g_i == g_j   (pull together)
    l(i, j) = max(0, cos(f_i, f_j) - margin)     otherwise       (push apart, up to the margin)

Pairs of different samples are never compared. Negative pairs vastly outnumber positive ones, so with
``balance=True`` a random subset of the negatives, as large as the number of positives of that sample,
is kept (the reference code draws them with a matching probability; here the count is exact).
The loss is the mean positive term plus the mean negative term over all kept pairs of the batch.

The term is symmetric in (i, j), so only unordered pairs i < j are formed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _balanced_negatives(neg: Tensor, num_keep: Tensor, generator: torch.Generator | None) -> Tensor:
    """Keep exactly ``num_keep[b]`` random True entries of each row of ``neg`` [B, M] (all if fewer)."""
    device = neg.device
    gen_device = generator.device if generator is not None else device
    scores = torch.rand(neg.shape, generator=generator, device=gen_device).to(device)
    scores = scores.masked_fill(~neg, -1.0)  # non-negatives rank last
    ordered = scores.sort(dim=1, descending=True).values
    k = torch.minimum(num_keep, neg.sum(dim=1))
    threshold = ordered.gather(1, (k - 1).clamp(min=0).unsqueeze(1))  # k-th largest score per row
    # Uniform scores in [0, 1) tie with probability ~0, so `>=` keeps k entries.
    return neg & (scores >= threshold) & (k > 0).unsqueeze(1)


def pairwise_group_contrastive(
    emb: Tensor,
    groups: Tensor,
    margin: float = 0.5,
    balance: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pairwise contrastive loss with same-group pairs as positives.

    Args:
        emb: [B, N, D] (or [N, D]) per-element embeddings; L2-normalised inside.
        groups: [B, N] (or [N]) integer group ids; elements with id < 0 take part in no pair.
        margin: cosine above which a negative pair is penalised.
        balance: subsample each sample's negative pairs to the number of its positive pairs.
        generator: random generator for the subsampling (reproducible runs).

    Returns:
        scalar float32 loss: mean over kept positive pairs of ``1 - cos`` plus mean over kept negative
        pairs of ``relu(cos - margin)``; a kind with no pair contributes 0.
    """
    if emb.dim() == 2:
        emb, groups = emb.unsqueeze(0), groups.unsqueeze(0)
    if groups.shape != emb.shape[:2]:
        raise ValueError(f"groups {tuple(groups.shape)} does not match embeddings {tuple(emb.shape)}")
    n = emb.shape[1]
    with torch.autocast(device_type=emb.device.type, enabled=False):
        f = F.normalize(emb.float(), dim=-1)
        i, j = torch.triu_indices(n, n, offset=1, device=emb.device)  # unordered pairs, no diagonal
        # One batched Gram matrix, then the upper triangle: O(B N^2) memory instead of O(B N^2 D).
        cos = torch.bmm(f, f.transpose(1, 2))[:, i, j]  # [B, M]
        valid = (groups[:, i] >= 0) & (groups[:, j] >= 0)
        same = groups[:, i] == groups[:, j]
        pos = valid & same
        neg = valid & ~same
        if balance:
            neg = _balanced_negatives(neg, pos.sum(dim=1), generator)

        pos_term = ((1.0 - cos) * pos).sum() / pos.sum().clamp(min=1)
        neg_term = (F.relu(cos - margin) * neg).sum() / neg.sum().clamp(min=1)
        return pos_term + neg_term
