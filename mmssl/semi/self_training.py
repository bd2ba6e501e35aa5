"""Self-training with pseudo-labels, in repeated rounds (Yarowsky 1995; Lee 2013; Xie et al. 2020).

Training is cut into ``rounds + 1`` equal phases::

    phase 0:  train on the labelled data only (the first teacher)
    boundary: predict the whole unlabelled pool with the current model (eval mode),
              pseudo-label yhat = argmax p(y|u) and a weight per sample (variant below),
              drop what the OOD guard rejects
    phase r:  train on labelled + pseudo-labelled: CE(x_l) + lambda_u * mean_u w_u CE(f(u), yhat_u)
    ... repeat at every boundary with the model trained so far

Variants (``selection``): ``confident`` adds only samples with confidence >= ``threshold`` (and, if
``top_fraction < 1``, among that fraction of most confident); ``all`` adds every sample with weight 1;
``weighted`` adds every sample with weight = its confidence. ``reinit_student`` trains each round's
student from the initial weights instead of continuing (Noisy Student style); the student sees the
weak view by default (``student_view: strong`` gives it the RandAugment view, i.e. input noise).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.semi.base import PseudoLabelMethod
from mmssl.semi.ood import OODGuard
from mmssl.semi.pseudo_label import SELECTIONS, select_pseudo_labels

STUDENT_VIEWS = {"weak": "u_weak", "strong": "u_strong"}


def round_boundaries(total_steps: int, num_phases: int) -> list[int]:
    """Steps at which phase ``1 .. num_phases - 1`` begins: ``total * r / num_phases``, distinct, >= 1."""
    out: list[int] = []
    for r in range(1, num_phases):
        b = max(1, round(total_steps * r / num_phases))
        if b < total_steps and b not in out:
            out.append(b)
    return out


class SelfTraining(PseudoLabelMethod):
    """Self-training; see the module docstring. Arguments as :func:`self_training`."""

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        data: DataBundle | None = None,
        *,
        rounds: int = 3,
        selection: str = "confident",
        threshold: float = 0.9,
        top_fraction: float = 1.0,
        **kw,
    ) -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"method.selection must be one of {', '.join(SELECTIONS)}, got '{selection}'")
        if rounds < 1:
            raise ValueError(f"method.rounds must be >= 1, got {rounds}")
        super().__init__(encoder, num_classes, data, **kw)
        self.rounds, self.selection = rounds, selection
        self.threshold, self.top_fraction = threshold, top_fraction

    def boundaries(self, total_steps: int) -> list[int]:
        return round_boundaries(total_steps, self.rounds + 1)

    def compute_pseudo_labels(self) -> tuple[Tensor, Tensor]:
        logits, _ = self.predict(self.pool, self.student())
        probs = torch.softmax(logits, dim=1)
        return select_pseudo_labels(probs, self.selection, self.threshold, self.top_fraction)


def self_training(
    encoder: nn.Module,
    data: DataBundle,
    unlabelled_weight: float = 1.0,
    rounds: int = 3,
    selection: str = "confident",
    threshold: float = 0.9,
    top_fraction: float = 1.0,
    reinit_student: bool = False,
    student_view: str = "weak",
    ood_guard: str = "none",
    ood_threshold: float | None = None,
    ood_quantile: float = 0.95,
    ood_k: int = 5,
    pool_batch_size: int = 256,
) -> SelfTraining:
    """Self-training in ``rounds`` pseudo-label rounds after a labelled-only phase.

    ``selection``: ``confident`` (confidence >= ``threshold``, within the ``top_fraction`` most
    confident), ``all`` (weight 1) or ``weighted`` (weight = confidence). ``unlabelled_weight``:
    lambda_u (0 = supervised only). ``ood_guard``: ``none`` | ``max_softmax`` | ``energy`` | ``knn``,
    scored at every round boundary; threshold ``ood_threshold`` (absolute) or the ``ood_quantile`` of
    labelled scores. ``data`` comes from the runner (its ``num_classes`` sizes the classifier).
    """
    if student_view not in STUDENT_VIEWS:
        raise ValueError(
            f"method.student_view must be one of {', '.join(STUDENT_VIEWS)}, got '{student_view}'"
        )
    return SelfTraining(
        encoder,
        data.num_classes,
        data,
        rounds=rounds,
        selection=selection,
        threshold=threshold,
        top_fraction=top_fraction,
        unlabelled_weight=unlabelled_weight,
        guard=OODGuard(ood_guard, ood_threshold, ood_quantile, k=ood_k),
        reinit_student=reinit_student,
        student_view=STUDENT_VIEWS[student_view],
        pool_batch_size=pool_batch_size,
    )
