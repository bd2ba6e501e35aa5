"""``classifier_accuracy``: test accuracy of a semi-supervised method's own classifier, plus what
happened to the unlabelled pool (OOD guard decisions, pseudo-label quality).

The pool's true labels and out-of-domain marks (``true_labels`` / ``is_ood`` of the dataset's
:class:`~mmssl.semi.pool.UnlabelledPool`) are read here only, for reporting; the methods never see them.

Metrics (accuracies are fractions, counts are ints):

* ``classifier_top1``: the evaluated model (the EMA / teacher where the method keeps one);
  ``student_top1``: the raw student, when that differs.
* ``pool_size``, ``pool_ood``: unlabelled samples, and how many are truly out of domain (if marked).
* ``ood_dropped``, ``ood_dropped_true_ood``: left out by the guard, and how many of those were truly
  out of domain (only once the guard has scored the pool).
* ``pseudo_labelled``, ``pseudo_labelled_ood``, ``pseudo_label_acc``: pool samples with a pseudo-label
  in use, how many of them are truly out of domain, and the accuracy of the labels on the in-domain
  ones (self-training / data distillation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.semi.base import SemiMethod, dataset_labels
from mmssl.semi.pool import UnlabelledPool


def _accuracy(method: SemiMethod, model: nn.Module, data: DataBundle, batch_size: int) -> float:
    logits, _ = method.predict(data.eval_test, model, batch_size=batch_size)
    return float((logits.argmax(dim=1).cpu() == dataset_labels(data.eval_test)).float().mean())


def classifier_accuracy(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Top-1 test accuracy of the method's classifier and the unlabelled-pool report (see module doc).

    The method is ``ctx.method`` (the trained one, or the baseline's); it must be a semi-supervised
    method (:class:`~mmssl.semi.base.SemiMethod`). ``batch_size``: prediction batch.
    """
    device, method = ctx.device, ctx.method
    if not isinstance(method, SemiMethod):
        raise ValueError(
            "evaluator 'classifier_accuracy' needs a semi-supervised method with a classifier "
            f"(mmssl.semi), got {type(method).__name__}"
        )
    if data.eval_test is None:
        raise ValueError("evaluator 'classifier_accuracy' needs data.eval_test")
    method.to(torch.device(device))
    out: dict[str, Any] = {"classifier_top1": _accuracy(method, method.eval_model(), data, batch_size)}
    if method.ema is not None:
        out["student_top1"] = _accuracy(method, method.student(), data, batch_size)

    pool = data.find_extra(UnlabelledPool)
    is_ood = pool.is_ood if pool is not None else None
    true_labels = pool.true_labels if pool is not None else None
    out["pool_size"] = int(method.ood_keep.numel())
    if is_ood is not None:
        out["pool_ood"] = int(is_ood.sum())
    if int(method.ood_refreshes) > 0:
        dropped = ~method.ood_keep.cpu()
        out["ood_dropped"] = int(dropped.sum())
        if is_ood is not None:
            out["ood_dropped_true_ood"] = int((dropped & is_ood).sum())
    phase = getattr(method, "phase", None)
    if phase is not None and int(phase) > 0:
        used = method.pseudo_weight.cpu() > 0  # type: ignore[operator]
        out["pseudo_labelled"] = int(used.sum())
        if is_ood is not None:
            out["pseudo_labelled_ood"] = int((used & is_ood).sum())
        if true_labels is not None:
            in_domain = used & (true_labels >= 0)
            if in_domain.any():
                correct = method.pseudo_label.cpu()[in_domain] == true_labels[in_domain]  # type: ignore[index]
                out["pseudo_label_acc"] = float(correct.float().mean())
    return out
