"""The registered modality-free evaluators: kNN, linear probe, N-shot linear probe, fine-tuning.

They need only the toolkit contracts: an encoder whose ``forward(x)`` returns ``{"global": [B, D]}``
and a :class:`~mmssl.data.DataBundle` whose ``eval_train`` / ``eval_test`` yield
``{"input": tensor, "label": int}``. Each is listed in ``mmssl/eval/components.py`` and called as

    fn(encoder, data, ctx: EvalContext, options) -> dict[str, float]   (accuracies in [0, 1])

with its recipe section as one options dataclass (:mod:`mmssl.eval.options`).

Frozen-feature evaluators share one extraction per (encoder state, dataset) through the cache in
:mod:`mmssl.eval.features` (keyed by identity plus a parameter-version stamp, so a changed encoder
is re-encoded); ``cache=False`` bypasses it. The plain functions are exported for direct use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.eval.features import cached_features
from mmssl.eval.few_shot import few_shot_linear, plan_shots
from mmssl.eval.finetune import finetune_classifier
from mmssl.eval.knn import knn_accuracy
from mmssl.eval.linear import linear_probe_accuracy
from mmssl.eval.options import FeatureOptions, FewShotOptions, FinetuneOptions, KNNOptions, ProbeOptions
from mmssl.option_markers import WHOLE_SECTION


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


def _features(
    encoder: nn.Module, data: DataBundle, evaluator: str, ctx: EvalContext, options: FeatureOptions
) -> tuple:
    train_set, test_set, num_classes = _labelled_splits(data, evaluator)
    device = torch.device(ctx.device)
    kw = dict(
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        cache=options.cache,
        split_over_ranks=ctx.split_over_ranks,
        channels_last=ctx.channels_last,
    )
    x_train, y_train = cached_features(encoder, train_set, device=device, **kw)
    x_test, y_test = cached_features(encoder, test_set, device=device, **kw)
    # Small probes and kNN run where the encoder ran (the GPU when there is one).
    return x_train.to(device), y_train.to(device), x_test.to(device), y_test.to(device), num_classes


def knn_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[KNNOptions, WHOLE_SECTION] = KNNOptions(),
) -> dict[str, float]:
    """Weighted kNN (cosine, ``exp(sim / temperature)`` votes over the ``k`` nearest) -> ``knn_top1``.

    Deterministic: ``ctx.seed`` is unused.
    """
    x_tr, y_tr, x_te, y_te, num_classes = _features(encoder, data, "knn", ctx, options)
    accuracy = knn_accuracy(x_tr, y_tr, x_te, y_te, num_classes, k=options.k, temperature=options.temperature)
    return {"knn_top1": accuracy}


def linear_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[ProbeOptions, WHOLE_SECTION] = ProbeOptions(),
) -> dict[str, float]:
    """Linear probe on frozen standardised features (Adam, cosine, L2 ``weight_decay``) -> ``linear_top1``."""
    x_tr, y_tr, x_te, y_te, num_classes = _features(encoder, data, "linear", ctx, options)
    acc = linear_probe_accuracy(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes,
        epochs=options.epochs,
        lr=options.lr,
        weight_decay=options.weight_decay,
        batch_size=options.batch_size,
        seed=ctx.seed,
        normalize=options.normalize,
    )
    return {"linear_top1": acc}


def few_shot_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[FewShotOptions, WHOLE_SECTION] = FewShotOptions(),
) -> dict[str, float]:
    """N-shot linear probe over ``seeds`` draws (seeds ``ctx.seed .. ctx.seed + seeds - 1``).

    Returns ``fewshot_{n}_mean`` and ``fewshot_{n}_std`` (population std over the draws) for each n
    in ``shots``; the support set is drawn from ``eval_train``, accuracy measured on ``eval_test``.

    A shot count larger than some class's number of ``eval_train`` samples is skipped, not failed: a
    warning names ``eval.few_shot.shots``, the class and the counts, the other shot counts are reported
    and ``fewshot_max_shots`` records the largest one the data allows
    (:func:`mmssl.eval.few_shot.plan_shots`). When none fits, a :class:`~mmssl.errors.ConfigError` says
    so, before any feature is extracted when ``eval_train`` lists its ``targets``.
    """
    return few_shot_metrics(encoder, data, ctx, options, key="eval.few_shot.shots")


def few_shot_metrics(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: FewShotOptions,
    *,
    key: str,
    where: str = "",
) -> dict[str, float]:
    """:func:`few_shot_evaluator` with the recipe key of ``shots`` (``key``) and a description of the
    data (``where``, default: ``eval_train`` of the bundle's dataset) for its messages; the evaluators
    that run the same protocol on other splits (``modality_few_shot``) call it with theirs."""
    names, where = few_shot_preflight(data, options, key=key, where=where)
    x_tr, y_tr, x_te, y_te, num_classes = _features(encoder, data, "few_shot", ctx, options)
    return few_shot_linear(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes,
        shots=[int(n) for n in options.shots],
        seeds=[ctx.seed + i for i in range(options.seeds)],
        epochs=options.epochs,
        lr=options.lr,
        weight_decay=options.weight_decay,
        batch_size=options.batch_size,
        normalize=options.normalize,
        key=key,
        class_names=names,
        where=where,
    )


def few_shot_preflight(
    data: DataBundle,
    options: FewShotOptions = FewShotOptions(),
    *,
    key: str = "eval.few_shot.shots",
    where: str = "",
) -> tuple[Sequence[str] | None, str]:
    """What can be checked of a few-shot evaluation without encoding anything: the labelled splits are
    there and, when ``eval_train`` lists its ``targets``, some shot count fits every class (else a
    :class:`~mmssl.errors.ConfigError`; a skipped one is warned about now). The runner calls it before
    pretraining (``few_shot_evaluator.preflight``). Returns the class names and the split's description."""
    train_set, _, _ = _labelled_splits(data, "few_shot")
    where = where or f"eval_train of dataset '{data.name or '?'}'"
    names = class_names_of(train_set)
    targets = _targets(train_set)
    if targets is not None:
        plan_shots(targets, options.shots, key=key, class_names=names, where=where)
    return names, where


def _targets(dataset: Dataset) -> list[int] | None:
    """The dataset's ``targets`` (one label per item) when it lists them, else None."""
    targets: Any = getattr(dataset, "targets", None)
    try:
        if targets is not None and len(targets) == len(dataset) > 0:  # type: ignore[arg-type]
            return [int(t) for t in targets]
    except (TypeError, ValueError):
        pass
    return None


def class_names_of(dataset: Dataset) -> Sequence[str] | None:
    """``class_names`` (or ``classes``) of a labelled dataset or of the dataset it wraps, else None."""
    node: Any = dataset
    for _ in range(4):
        for attr in ("class_names", "classes"):
            names = getattr(node, attr, None)
            if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
                return list(names)
        inner = getattr(node, "base", None)
        node = inner if inner is not None else getattr(node, "dataset", None)
        if node is None:
            return None
    return None


# The runner calls an evaluator's ``preflight(data, **options)`` before pretraining (mmssl.pipeline).
few_shot_evaluator.preflight = few_shot_preflight  # type: ignore[attr-defined]
# These three only read frozen features (then fit small probes identically on every rank): under torchrun
# every rank may extract a part of them (EvalContext.split_over_ranks).
for _evaluator in (knn_evaluator, linear_evaluator, few_shot_evaluator):
    _evaluator.splits_over_ranks = True  # type: ignore[attr-defined]


def finetune_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[FinetuneOptions, WHOLE_SECTION] = FinetuneOptions(),
) -> dict[str, float]:
    """Fine-tune a copy of the encoder with a linear head (AdamW + cosine) -> ``finetune_top1``.

    The encoder passed in is left untouched.
    """
    train_set, test_set, num_classes = _labelled_splits(data, "finetune")
    acc = finetune_classifier(
        encoder,
        train_set,
        test_set,
        num_classes,
        epochs=options.epochs,
        lr=options.lr,
        head_lr_scale=options.head_lr_scale,
        weight_decay=options.weight_decay,
        batch_size=options.batch_size,
        device=ctx.device,
        seed=ctx.seed,
        max_steps=options.max_steps,
        num_workers=options.num_workers,
    )
    return {"finetune_top1": acc}
