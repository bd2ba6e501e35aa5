"""Chamfer distance between point sets, in plain torch (no compiled extension).

For sets ``A = {a_i}`` (``N`` points) and ``B = {b_j}`` (``M`` points), with ``d`` the squared Euclidean
distance (``squared=True``, Point-MAE's "CD-L2", Pang et al., ECCV 2022, Sec. 3.3 eq. 3 and its
``ChamferDistanceL2``) or the Euclidean distance (``squared=False``, Point-MAE's "CD-L1")::

    CD(A, B) = 1/N sum_i min_j d(a_i, b_j)  +  1/M sum_j min_i d(a_i, b_j)

Both directions matter: the first alone is small when A collapses onto part of B, the second alone when
A sprays points everywhere. Point-MAE's extension averages each direction over every point of the batch
and adds the two; with sets of equal size per batch (``K`` points per masked group) that is the mean over
sets of ``CD``, which :func:`chamfer_distance` returns with ``reduction="mean"``.

The pairwise distances are one ``[B, N, M]`` tensor: fine for groups (``K = 32``) and for whole
clouds of a few thousand points on a GPU; the gradient reaches both sets through the selected pairs.
"""

from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def nearest_distances(a: Tensor, b: Tensor, squared: bool = True) -> tuple[Tensor, Tensor]:
    """``(d_ab [B, N], d_ba [B, M])``: for each point of ``a [B, N, D]`` the distance to its nearest point
    of ``b [B, M, D]``, and for each point of ``b`` to its nearest point of ``a``.

    Distances are computed as ``|x - y|^2`` summed over coordinates (not ``|x|^2 + |y|^2 - 2 x.y``, which
    loses precision for nearby points); ``squared=False`` takes the square root (its gradient is
    undefined at exactly coincident points, where it is set to 0 by the clamp).
    """
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(
            f"chamfer distance needs [B, N, D] and [B, M, D] sets, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError("chamfer distance needs non-empty sets")
    diff = a.unsqueeze(2) - b.unsqueeze(1)  # [B, N, M, D]
    dist = diff.square().sum(-1)
    if not squared:
        dist = dist.clamp_min(1e-12).sqrt()
    return dist.amin(dim=2), dist.amin(dim=1)


def chamfer_distance(a: Tensor, b: Tensor, *, squared: bool = True, reduction: str = "mean") -> Tensor:
    """The symmetric Chamfer distance between each pair of sets ``a[k]`` / ``b[k]`` (module docstring).

    ``a [B, N, D]`` and ``b [B, M, D]`` (``N`` may differ from ``M``); ``reduction``: ``"none"`` ->
    ``[B]`` (one distance per pair), ``"mean"`` / ``"sum"`` over the pairs.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    d_ab, d_ba = nearest_distances(a.float(), b.float(), squared=squared)
    per_pair = d_ab.mean(dim=1) + d_ba.mean(dim=1)
    if reduction == "none":
        return per_pair
    return per_pair.sum() if reduction == "sum" else per_pair.mean()
