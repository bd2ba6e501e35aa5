"""Cross-modal retrieval: Recall@K in both directions on held-out pairs.

Both sides of every held-out pair are embedded into the shared space (tower + projection head,
L2-normalised) and compared by cosine similarity. For a query ``a_i`` the correct item is its own
pair ``b_i``; its rank is the number of other candidates scored at least as high::

    rank_i = #{ j != i : s_ij >= s_ii },      R@K = 1/N sum_i [rank_i < K]

Ties count against the query, so a collapsed embedding (all similarities equal) scores R@K = 0 rather
than 1. A random ranking finds the pair in its top K with probability ``K / N`` (chance, reported as
``ret_chance_r{K}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.data.extras import HeldOutPairs
from mmssl.data.keys import INPUT, LABEL
from mmssl.eval.context import EvalContext
from mmssl.eval.features import extract_features


def retrieval_ranks(similarity: Tensor) -> Tensor:
    """0-based rank [N] of the diagonal entry in each row of a square similarity matrix (ties count)."""
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square [N, N] matrix, got {tuple(similarity.shape)}")
    positive = similarity.diagonal().unsqueeze(1)
    # ">=" counts the diagonal itself once: subtract it.
    return (similarity >= positive).sum(dim=1) - 1


def recall_at_k(similarity: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """``{K: R@K}`` for queries along the rows of ``similarity`` [N, N] (row i's match is column i)."""
    ranks = retrieval_ranks(similarity)
    return {int(k): (ranks < k).double().mean().item() for k in ks}


class _KeyView(Dataset):
    """One side of a paired dataset as a labelled dataset ``{"input": item[key], "label": i}``."""

    def __init__(self, pairs: Dataset, key: str) -> None:
        self.pairs, self.key = pairs, key

    def __len__(self) -> int:
        return len(self.pairs)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {INPUT: self.pairs[i][self.key], LABEL: i}


class _Embedder(nn.Module):
    """A method's shared-space embedding of one item key, as an encoder ``x -> [B, D]``."""

    def __init__(self, method: nn.Module, key: str) -> None:
        super().__init__()
        self.method, self.key = method, key
        self.train(method.training)  # extract_features restores this mode on the whole method

    def forward(self, x: Tensor) -> Tensor:
        return self.method.embed(self.key, x)


def embed_pairs(
    method: nn.Module,
    pairs: Dataset,
    key: str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    num_workers: int = 0,
) -> Tensor:
    """L2-normalised shared-space embeddings [N, D] of ``pairs[i][key]``, in dataset order."""
    feats, _ = embed_labelled(
        method, _KeyView(pairs, key), key, device=device, batch_size=batch_size, num_workers=num_workers
    )
    return feats


def embed_labelled(
    method: nn.Module,
    dataset: Dataset,
    key: str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """L2-normalised shared-space embeddings [N, D] of a labelled dataset's inputs (``{"input", "label"}``)
    through the tower reading ``key`` and its head, with the labels [N], in dataset order."""
    feats, labels = extract_features(
        _Embedder(method, key), dataset, device=device, batch_size=batch_size, num_workers=num_workers
    )
    return F.normalize(feats, dim=1), labels


def retrieval_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 256,
    num_workers: int = 0,
) -> dict[str, float]:
    """R@K in both directions between a cross-modal method's two towers on the bundle's held-out pairs
    (its :class:`~mmssl.data.extras.HeldOutPairs` extra).

    Returns ``ret_{a}2{b}_r{K}`` (queries ``a``, candidates ``b``) and ``ret_{b}2{a}_r{K}`` (``a``,
    ``b``: the method's tower keys, e.g. ``ret_image2audio_r1``) and ``ret_chance_r{K}`` = K / N. ``encoder``
    and ``seed`` are unused (the method's towers and heads are evaluated; nothing is random).
    """
    device, method = ctx.device, ctx.method
    if method is None or not hasattr(method, "embed") or not hasattr(method, "tower_keys"):
        raise ValueError(
            "evaluator 'retrieval' needs a cross-modal method with two towers (e.g. "
            f"crossmodal_contrastive), got {type(method).__name__}"
        )
    pairs = data.extra(HeldOutPairs, needed_by="evaluator 'retrieval'").dataset
    if len(pairs) < 2:
        raise ValueError(f"evaluator 'retrieval' needs at least 2 held-out pairs, got {len(pairs)}")
    a, b = method.tower_keys
    opts = dict(device=device, batch_size=batch_size, num_workers=num_workers)
    z_a, z_b = embed_pairs(method, pairs, a, **opts), embed_pairs(method, pairs, b, **opts)
    similarity = z_a @ z_b.T
    n = similarity.shape[0]
    results: dict[str, float] = {}
    for (query, target), sim in (((a, b), similarity), ((b, a), similarity.T)):
        for k, value in recall_at_k(sim, ks).items():
            results[f"ret_{query}2{target}_r{k}"] = value
    for k in ks:
        results[f"ret_chance_r{int(k)}"] = min(int(k), n) / n
    return results
