"""The registered modality-free evaluators: kNN, linear probe, N-shot linear probe, fine-tuning.

They need only the toolkit contracts: an encoder whose ``forward(x)`` returns ``{"global": [B, D]}``
and a :class:`~mmssl.data.DataBundle` whose ``eval_train`` / ``eval_test`` yield
``{"input": tensor, "label": int}``. Each is registered in ``EVALUATORS`` (``modality=None``) as

    fn(encoder, data, *, device, seed, **options) -> dict[str, float]   (accuracies in [0, 1]).

Frozen-feature evaluators share one extraction per (encoder state, dataset) through the cache in
:mod:`mmssl.eval.features` (keyed by identity plus a parameter-version stamp, so a changed encoder
is re-encoded); ``cache=False`` bypasses it. The plain functions are exported for direct use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.eval.features import cached_features
from mmssl.eval.few_shot import few_shot_linear
from mmssl.eval.finetune import finetune_classifier
from mmssl.eval.knn import knn_accuracy
from mmssl.eval.linear import linear_probe_accuracy


def _labelled_splits(data: DataBundle, evaluator: str) -> tuple:
    """``(eval_train, eval_test, num_classes)`` or a ValueError saying what the bundle lacks."""
    missing = [name for name in ("eval_train", "eval_test") if getattr(data, name, None) is None]
    if missing:
        raise ValueError(
            f"evaluator '{evaluator}' needs labelled data, but the dataset bundle has no "
            f"{' / '.join(missing)}; use a labelled dataset or drop '{evaluator}' from the recipe's eval list"
        )
    if data.num_classes < 1:
        raise ValueError(f"evaluator '{evaluator}' needs DataBundle.num_classes >= 1, got {data.num_classes}")
    return data.eval_train, data.eval_test, data.num_classes


def _features(encoder: nn.Module, data: DataBundle, evaluator: str, device: torch.device, **kw) -> tuple:
    train_set, test_set, num_classes = _labelled_splits(data, evaluator)
    x_train, y_train = cached_features(encoder, train_set, device=device, **kw)
    x_test, y_test = cached_features(encoder, test_set, device=device, **kw)
    # Small probes and kNN run where the encoder ran (the GPU when there is one).
    return x_train.to(device), y_train.to(device), x_test.to(device), y_test.to(device), num_classes


def knn_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    k: int = 200,
    temperature: float = 0.07,
    batch_size: int = 256,
    num_workers: int = 0,
    cache: bool = True,
) -> dict[str, float]:
    """Weighted kNN (cosine, ``exp(sim / temperature)`` votes over the ``k`` nearest) -> ``knn_top1``.

    ``seed`` is unused (kNN is deterministic); ``batch_size`` is the feature-extraction batch.
    """
    device = ctx.device
    device = torch.device(device)
    x_tr, y_tr, x_te, y_te, num_classes = _features(
        encoder, data, "knn", device, batch_size=batch_size, num_workers=num_workers, cache=cache
    )
    return {"knn_top1": knn_accuracy(x_tr, y_tr, x_te, y_te, num_classes, k=k, temperature=temperature)}


def linear_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    normalize: bool = True,
    num_workers: int = 0,
    cache: bool = True,
) -> dict[str, float]:
    """Linear probe on frozen standardised features (Adam, cosine, L2 ``weight_decay``) -> ``linear_top1``."""
    device, seed = ctx.device, ctx.seed
    device = torch.device(device)
    x_tr, y_tr, x_te, y_te, num_classes = _features(
        encoder, data, "linear", device, batch_size=batch_size, num_workers=num_workers, cache=cache
    )
    acc = linear_probe_accuracy(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
        normalize=normalize,
    )
    return {"linear_top1": acc}


def few_shot_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    shots: Sequence[int] = (1, 5, 10),
    seeds: int = 5,
    epochs: int = 200,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    normalize: bool = True,
    num_workers: int = 0,
    cache: bool = True,
) -> dict[str, float]:
    """N-shot linear probe over ``seeds`` draws (seeds ``seed .. seed + seeds - 1``).

    Returns ``fewshot_{n}_mean`` and ``fewshot_{n}_std`` (population std over the draws) for each n
    in ``shots``; the support set is drawn from ``eval_train``, accuracy measured on ``eval_test``.
    """
    device, seed = ctx.device, ctx.seed
    if seeds < 1:
        raise ValueError(f"few_shot needs seeds >= 1, got {seeds}")
    device = torch.device(device)
    x_tr, y_tr, x_te, y_te, num_classes = _features(
        encoder, data, "few_shot", device, batch_size=batch_size, num_workers=num_workers, cache=cache
    )
    return few_shot_linear(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes,
        shots=[int(n) for n in shots],
        seeds=[seed + i for i in range(seeds)],
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        normalize=normalize,
    )


def finetune_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    epochs: int = 5,
    lr: float = 5e-4,
    head_lr_scale: float = 10.0,
    weight_decay: float = 0.05,
    batch_size: int = 64,
    max_steps: int | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Fine-tune a copy of the encoder with a linear head (AdamW + cosine) -> ``finetune_top1``.

    The encoder passed in is left untouched.
    """
    device, seed = ctx.device, ctx.seed
    train_set, test_set, num_classes = _labelled_splits(data, "finetune")
    acc = finetune_classifier(
        encoder,
        train_set,
        test_set,
        num_classes,
        epochs=epochs,
        lr=lr,
        head_lr_scale=head_lr_scale,
        weight_decay=weight_decay,
        batch_size=batch_size,
        device=device,
        seed=seed,
        max_steps=max_steps,
        num_workers=num_workers,
    )
    return {"finetune_top1": acc}
