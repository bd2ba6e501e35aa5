"""Pieces shared by the image pretext classifiers (rotation, jigsaw, context prediction).

Jigsaw (Noroozi & Favaro, ECCV 2016) and context prediction (Doersch et al., ICCV 2015) share one
architecture: a set of K patches is cut from each image (:func:`crop_patches`), the shared trunk (the
method's ``encoder``) embeds every patch, a Linear-BN-ReLU layer follows per patch (the papers' fc6,
:func:`patch_embedding`), and a classifier on the K embeddings concatenated in order predicts the
pretext label (:func:`patch_set_logits`). All three methods report the cross-entropy and accuracy of
their classifier (:func:`classification_outputs`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def crop_patches(images: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """Cut square patches by advanced indexing, all at once.

    ``images`` ``[B, C, H, W]``; ``top``/``left`` ``[B, K]`` (one corner per patch) or ``[B, K, C]``
    (one per patch and channel, e.g. jittered colour channels). Returns ``[B, K, C, size, size]``.
    Every patch must lie inside the image (a ``ValueError`` otherwise).
    """
    b, c, h, w = images.shape
    if top.dim() == 2:
        top, left = (t.unsqueeze(-1).expand(-1, -1, c) for t in (top, left))
    if top.min() < 0 or left.min() < 0 or top.max() + size > h or left.max() + size > w:
        raise ValueError(f"patches of {size} px leave the {h}x{w} image")
    offsets = torch.arange(size, device=images.device)
    rows = (top.unsqueeze(-1) + offsets).unsqueeze(-1)  # [B, K, C, s, 1]
    cols = (left.unsqueeze(-1) + offsets).unsqueeze(-2)  # [B, K, C, 1, s]
    bi = torch.arange(b, device=images.device).view(b, 1, 1, 1, 1)
    ci = torch.arange(c, device=images.device).view(1, 1, c, 1, 1)
    return images[bi, ci, rows, cols]


def patch_embedding(in_dim: int, out_dim: int) -> nn.Sequential:
    """The per-patch layer after the trunk, shared by all patches: Linear (no bias) - BN - ReLU (fc6)."""
    return nn.Sequential(
        nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True)
    )


def patch_set_logits(encoder: nn.Module, embed: nn.Module, classifier: nn.Module, patches: Tensor) -> Tensor:
    """``patches`` ``[B, K, C, P, P]`` -> class logits ``[B, classes]``: ``encoder``'s global feature of
    every patch, ``embed`` per patch, ``classifier`` on the K embeddings concatenated in order."""
    b = patches.shape[0]
    feats = embed(encoder(patches.flatten(0, 1))["global"])  # [B * K, D]
    return classifier(feats.view(b, -1))


def classification_outputs(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """``{"loss": cross-entropy, "acc": accuracy (detached)}`` of a pretext classifier."""
    loss = F.cross_entropy(logits, labels)
    acc = (logits.argmax(dim=1) == labels).float().mean()
    return {"loss": loss, "acc": acc.detach()}
