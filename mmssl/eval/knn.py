"""Weighted k-nearest-neighbour classification on frozen features.

The protocol of Wu et al. 2018 (InstDisc), used by MoCo, solo-learn and lightly: features are
L2-normalised, similarity is the cosine ``s_i = f_test . f_i``, the k most similar training samples
vote for their class with weight ``exp(s_i / T)``, and the class with the largest summed weight wins:

    score(c) = sum_{i in topk(f_test)} exp(s_i / T) * [y_i == c],     y_hat = argmax_c score(c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Similarity chunks hold at most this many entries (64 MiB in float32) whatever the train size.
_MAX_CHUNK_ELEMENTS = 1 << 24


def _check(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, num_classes: int) -> None:
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            "features must be [N, D] with the same D, got "
            f"{tuple(train_feats.shape)} and {tuple(test_feats.shape)}"
        )
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"train_labels must be [{train_feats.shape[0]}], got {tuple(train_labels.shape)}")
    if train_feats.shape[0] == 0:
        raise ValueError("kNN needs at least one training sample")
    if train_labels.min() < 0 or train_labels.max() >= num_classes:
        raise ValueError(
            f"train labels must lie in [0, {num_classes}), got range [{int(train_labels.min())}, "
            f"{int(train_labels.max())}]"
        )


@torch.no_grad()
def knn_classify(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk_size: int | None = None,
) -> Tensor:
    """Predicted class ([M] int64) for each test feature by temperature-weighted kNN voting.

    ``k`` is clipped to the number of training samples. The test set is processed in chunks so the
    [chunk, N_train] similarity matrix stays bounded (``chunk_size`` defaults to ~16M entries / N_train).
    Runs on the device of ``train_feats``; returns predictions on that device.
    """
    _check(train_feats, train_labels, test_feats, num_classes)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    device = train_feats.device
    train = F.normalize(train_feats.float(), dim=1)
    train_labels = train_labels.to(device).long()
    k = min(k, train.shape[0])
    if chunk_size is None:
        chunk_size = max(1, _MAX_CHUNK_ELEMENTS // train.shape[0])
    preds = []
    for start in range(0, test_feats.shape[0], chunk_size):
        test = F.normalize(test_feats[start : start + chunk_size].to(device).float(), dim=1)
        sim = test @ train.T  # [m, N] cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # [m, k]
        # exp((s - s_max) / T) rescales a row by a constant, so the argmax is unchanged but small
        # temperatures cannot overflow to inf.
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
        scores = torch.zeros(test.shape[0], num_classes, device=device)
        scores.scatter_add_(1, train_labels[top_idx], weights)  # sum the weights per voted class
        preds.append(scores.argmax(dim=1))
    if not preds:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(preds)


def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk_size: int | None = None,
) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of :func:`knn_classify` on ``test_labels``."""
    preds = knn_classify(train_feats, train_labels, test_feats, num_classes, k, temperature, chunk_size)
    if preds.numel() == 0:
        raise ValueError("kNN accuracy needs at least one test sample")
    return (preds.cpu() == test_labels.cpu().long()).float().mean().item()
