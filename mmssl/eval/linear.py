"""Linear probe: multinomial logistic regression on frozen, precomputed features.

With standardised features ``z = (x - mu) / sigma`` (train statistics) the probe minimises

    L(W, b) = mean_i CE(W z_i + b, y_i) + (weight_decay / 2) * ||W||^2

with Adam on mini-batches and a cosine learning-rate decay. The problem is convex, so zero
initialisation is fine and makes the result depend on ``seed`` only through the batch order.
The standardisation is folded into the returned layer, which therefore takes raw features:

    W z + b = (W / sigma) x + (b - (W / sigma) mu).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_labels(labels: Tensor, n: int, num_classes: int, name: str) -> None:
    if labels.shape != (n,):
        raise ValueError(f"{name} must be [{n}], got {tuple(labels.shape)}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
        )


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero on CPU inside the block, then restore the previous mode.

    On separable data the softmax probabilities of the wrong classes, and Adam's squared gradients,
    fall below float32's normal range (~1.2e-38), where x86 arithmetic slows down ~100x. Flushing
    them to zero changes nothing measurable (the values are < 1e-38).
    """
    probe = torch.tensor([1e-39], dtype=torch.float32)  # subnormal: x * 1 reads 0 when flushing is on
    was_flushing = (probe * 1.0).item() == 0.0
    if not torch.set_flush_denormal(True):  # not supported on this CPU
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


def train_linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
    normalize: bool = True,
) -> nn.Linear:
    """Train a linear classifier on ``train_feats [N, D]`` and return it (standardisation folded in).

    Runs on the device of ``train_feats``; ``epochs * ceil(N / batch_size)`` Adam steps with the
    learning rate decayed from ``lr`` to 0 by a cosine. ``weight_decay`` is an L2 penalty on the
    weights (not the bias). ``normalize=False`` trains on the raw features.
    """
    if train_feats.ndim != 2 or train_feats.shape[0] == 0:
        raise ValueError(f"train_feats must be a non-empty [N, D] tensor, got {tuple(train_feats.shape)}")
    n, dim = train_feats.shape
    _check_labels(train_labels, n, num_classes, "train_labels")
    device = train_feats.device
    x = train_feats.float()
    y = train_labels.to(device).long()
    if normalize:
        mean = x.mean(dim=0)
        # A constant feature gets std 1: its standardised value is 0 on train, so its weight stays 0.
        std = x.std(dim=0, unbiased=False)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        x = (x - mean) / std
    else:
        mean = torch.zeros(dim, device=device)
        std = torch.ones(dim, device=device)

    weight = torch.zeros(num_classes, dim, device=device, requires_grad=True)
    bias = torch.zeros(num_classes, device=device, requires_grad=True)
    optimizer = torch.optim.Adam(
        [{"params": [weight], "weight_decay": weight_decay}, {"params": [bias], "weight_decay": 0.0}], lr=lr
    )
    batch_size = min(batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    with flush_denormals():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
                loss = F.cross_entropy(F.linear(x[idx], weight, bias), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1

    layer = nn.Linear(dim, num_classes).to(device)
    with torch.no_grad():
        folded = weight / std
        layer.weight.copy_(folded)
        layer.bias.copy_(bias - folded @ mean)
    return layer


@torch.no_grad()
def linear_accuracy(layer: nn.Linear, feats: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of a trained probe on ``feats``."""
    if feats.shape[0] == 0:
        raise ValueError("accuracy needs at least one sample")
    device = layer.weight.device
    preds = layer(feats.to(device).float()).argmax(dim=1)
    return (preds == labels.to(device).long()).float().mean().item()


def linear_probe_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
    normalize: bool = True,
) -> float:
    """Train :func:`train_linear_probe` on the train features and return its test top-1 accuracy."""
    _check_labels(test_labels, test_feats.shape[0], num_classes, "test_labels")
    layer = train_linear_probe(
        train_feats,
        train_labels,
        num_classes,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
        normalize=normalize,
    )
    return linear_accuracy(layer, test_feats, test_labels)
