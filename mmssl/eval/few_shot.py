"""N-shot linear evaluation: a linear probe trained on n labelled samples per class, over several seeds.

For each shot count n and seed s, n training samples per class are drawn (:func:`sample_n_shot`),
a linear probe (:func:`mmssl.eval.linear.train_linear_probe`) is trained on their frozen features
and scored on the whole test set. The report is the mean and the (population, ``ddof=0``) standard
deviation of the test accuracy over the seeds, as in "K labelled per class, averaged over seeds".

A shot count that some class cannot supply (``n`` larger than the class's number of training
samples) is not evaluated: the benchmark reports the shot counts the data allows, a warning names the
recipe key, the smallest class and its count, and the metrics gain ``fewshot_max_shots`` (the largest
``n`` every class can supply) so the gap shows in ``metrics.json`` and the table. Drawing fewer than
``n`` samples for the short class, or drawing with replacement, would report a number under the name
``n``-shot that is not an n-shot result; failing the whole evaluation after pretraining would lose the
shot counts that are fine. When no requested shot count fits, :func:`plan_shots` raises a
:class:`~mmssl.errors.ConfigError` before any probe is trained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from mmssl.errors import ConfigError
from mmssl.eval.linear import linear_accuracy, train_linear_probe

log = logging.getLogger(__name__)

#: metric added when some requested shot counts were skipped: the largest n every class can supply
MAX_SHOTS_KEY = "fewshot_max_shots"

_warned: set[str] = set()  # each skip is said once per process (trained, baseline and preflight alike)


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


def _class_label(cls: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= cls < len(class_names) and str(class_names[cls]) != str(cls):
        return f"class {cls} ('{class_names[cls]}')"
    return f"class {cls}"


def plan_shots(
    labels: Tensor | Sequence[int],
    shots: Sequence[int],
    *,
    key: str = "shots",
    class_names: Sequence[str] | None = None,
    where: str = "the training split",
) -> tuple[list[int], dict[str, float]]:
    """The shot counts of ``shots`` that every class in ``labels`` can supply, and the metrics to add.

    Returns ``(kept, extra)``: ``kept`` in the order given; ``extra`` is ``{"fewshot_max_shots": m}``
    (``m``: the smallest class's sample count) when some were skipped, else empty. Each skipped ``n`` is
    logged as a warning naming ``key``, the smallest class (by name when ``class_names`` has it) and the
    counts, once per process (the runner's check before pretraining, the trained encoder's and the
    baseline's evaluations would say the same). Raises :class:`~mmssl.errors.ConfigError` naming ``key``,
    that class and the counts when none is left (or for an empty ``shots``, an ``n < 1``, no labels).
    """
    requested = [int(n) for n in shots]
    if not requested:
        raise ConfigError(f"{key} is empty: give at least one shot count")
    bad = [n for n in requested if n < 1]
    if bad:
        raise ConfigError(f"{key} must be >= 1, got {bad[0]}")
    labels = torch.as_tensor(labels).cpu().long().reshape(-1)
    if labels.numel() == 0:
        raise ConfigError(f"{key}: {where} has no labelled samples to draw shots from")
    classes, counts = torch.unique(labels, return_counts=True)
    smallest = int(counts.argmin())
    fewest, short_cls = int(counts[smallest]), int(classes[smallest])
    kept = [n for n in requested if n <= fewest]
    skipped = [n for n in requested if n > fewest]
    if not skipped:
        return kept, {}
    who = _class_label(short_cls, class_names)
    if not kept:
        raise ConfigError(
            f"{key}={requested}: {who} has only {fewest} samples in {where}, fewer than "
            f"{min(requested)} shots; every n in {key} must be <= {fewest} for this data"
        )
    for n in skipped:
        under = int((counts < n).sum())
        others = f" ({under} of {len(classes)} classes have fewer than {n})" if under > 1 else ""
        message = (
            f"{key}: {n}-shot skipped: {who} has only {fewest} samples in {where}{others}; "
            f"the other shot counts ({', '.join(str(k) for k in kept)}) are reported"
        )
        if message not in _warned:
            _warned.add(message)
            log.warning(message)
    return kept, {MAX_SHOTS_KEY: fewest}


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
    key: str = "shots",
    class_names: Sequence[str] | None = None,
    where: str = "the training split",
) -> dict[str, float]:
    """Mean and std over seeds of n-shot linear-probe test accuracy, for every n in ``shots``.

    ``seeds`` is a count (seeds 0..seeds-1) or an explicit list of seeds. Each seed fixes both the
    support sample and the probe's batch order. Returns ``{"fewshot_{n}_mean": ..., "fewshot_{n}_std":
    ...}`` with accuracies as fractions in [0, 1]. The default ``epochs`` is higher than the full
    linear probe's because the support set fits in one batch (one step per epoch).

    An ``n`` larger than some class's number of training samples is skipped (:func:`plan_shots`: a
    warning naming ``key`` and the class, ``class_names`` giving its name and ``where`` the split, and
    ``fewshot_max_shots`` in the result); when every ``n`` is too large, a
    :class:`~mmssl.errors.ConfigError` is raised before any probe is trained.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("few-shot evaluation needs at least one seed")
    kept, extra = plan_shots(train_labels, shots, key=key, class_names=class_names, where=where)
    results: dict[str, float] = {}
    for n in kept:
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
    results.update(extra)
    return results
