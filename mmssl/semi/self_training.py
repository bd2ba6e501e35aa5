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

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.errors import ConfigError
from mmssl.option_markers import WHOLE_SECTION
from mmssl.semi.base import PseudoLabelMethod
from mmssl.semi.options import PseudoLabelOptions
from mmssl.semi.pseudo_label import SELECTIONS, select_pseudo_labels


def round_boundaries(total_steps: int, num_phases: int) -> list[int]:
    """Steps at which phase ``1 .. num_phases - 1`` begins: ``total * r / num_phases``, distinct, >= 1."""
    out: list[int] = []
    for r in range(1, num_phases):
        b = max(1, round(total_steps * r / num_phases))
        if b < total_steps and b not in out:
            out.append(b)
    return out


@dataclass(frozen=True)
class SelfTrainingOptions(PseudoLabelOptions):
    """Self-training's ``method`` keys: ``rounds`` pseudo-label rounds after a labelled-only phase.

    ``selection``: ``confident`` (confidence >= ``threshold``, within the ``top_fraction`` most
    confident), ``all`` (weight 1) or ``weighted`` (weight = confidence). ``unlabelled_weight``:
    lambda_u (0 = supervised only). ``ood``: the guard, scored at every round boundary.
    ``reinit_student`` / ``student_view``: see :class:`~mmssl.semi.options.PseudoLabelOptions`.
    """

    rounds: int = 3
    selection: str = "confident"
    threshold: float = 0.9
    top_fraction: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got '{self.selection}'")
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")


class SelfTraining(PseudoLabelMethod):
    """Self-training; see the module docstring. Options: :class:`SelfTrainingOptions`."""

    options: SelfTrainingOptions

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle,
        options: Annotated[SelfTrainingOptions, WHOLE_SECTION] = SelfTrainingOptions(),
    ) -> None:
        super().__init__(encoder, data, options)

    def boundaries(self, total_steps: int) -> list[int]:
        return round_boundaries(total_steps, self.options.rounds + 1)

    def compute_pseudo_labels(self) -> tuple[Tensor, Tensor]:
        logits, _ = self.predict(self.pool, self.student())
        probs = torch.softmax(logits, dim=1)
        opts = self.options
        return select_pseudo_labels(probs, opts.selection, opts.threshold, opts.top_fraction)
