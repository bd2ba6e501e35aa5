"""N-shot linear evaluation: a linear probe trained on n labelled samples per class, over several seeds.

For each shot count n and seed s, n training samples per class are drawn (:func:`sample_n_shot`),
a linear probe (:func:`mmssl.eval.linear.train_linear_probe`) is trained on their frozen features
and scored on the whole test set. The report is the mean and the (population, ``ddof=0``) standard
deviation of the test accuracy over the seeds, as in "K labelled per class, averaged over seeds".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmssl.eval.linear import linear_accuracy, train_linear_probe


def sample_n_shot(labels: Tensor, n: int, seed: int) -> Tensor:
    """Indices of exactly ``n`` samples of every class present in ``labels``, drawn with ``seed``.

    The draw depends only on ``labels``, ``n`` and ``seed``; indices come grouped by class in
    ascending class order. Raises ``ValueError`` naming the class when one has fewer than ``n``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    labels = labels.cpu().long()
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for cls in torch.unique(labels).tolist():  # sorted, so the draw order is fixed
        members = (labels == cls).nonzero(as_tuple=True)[0]
        if members.numel() < n:
            raise ValueError(f"class {cls} has only {members.numel()} samples, fewer than n={n} shots")
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:n]])
    return torch.cat(picked)


def few_shot_linear(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    num_classes: int,
    shots: Sequence[int] = (1, 5, 10),
    seeds: int | Sequence[int] = 5,
    *,
    epochs: int = 200,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    normalize: bool = True,
) -> dict[str, float]:
    """Mean and std over seeds of n-shot linear-probe test accuracy, for every n in ``shots``.

    ``seeds`` is a count (seeds 0..seeds-1) or an explicit list of seeds. Each seed fixes both the
    support sample and the probe's batch order. Returns ``{"fewshot_{n}_mean": ..., "fewshot_{n}_std":
    ...}`` with accuracies as fractions in [0, 1]. The default ``epochs`` is higher than the full
    linear probe's because the support set fits in one batch (one step per epoch).
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("few-shot evaluation needs at least one seed")
    results: dict[str, float] = {}
    for n in shots:
        accs = []
        for seed in seed_list:
            idx = sample_n_shot(train_labels, n, seed).to(train_feats.device)
            layer = train_linear_probe(
                train_feats[idx],
                train_labels.to(train_feats.device)[idx],
                num_classes,
                epochs=epochs,
                lr=lr,
                weight_decay=weight_decay,
                batch_size=batch_size,
                seed=seed,
                normalize=normalize,
            )
            accs.append(linear_accuracy(layer, test_feats, test_labels))
        acc = torch.tensor(accs, dtype=torch.float64)
        results[f"fewshot_{n}_mean"] = acc.mean().item()
        results[f"fewshot_{n}_std"] = acc.std(unbiased=False).item()
    return results
