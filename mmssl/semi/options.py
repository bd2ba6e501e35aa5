"""Recipe options of the semi-supervised methods, declared once as typed dataclasses.

A method's ``method:`` section is flat (``unlabelled_weight``, ``threshold`` ...) plus one nested
section, ``ood:``, for the out-of-domain guard (:mod:`mmssl.semi.ood`)::

    method:
      name: fixmatch
      threshold: 0.95
      ood: {guard: energy, quantile: 0.95, start: 0.2, every: 0}

The options every method shares live in :class:`SemiOptions`; the two families add theirs
(:class:`OnlineOptions`: an EMA copy and a scheduled guard; :class:`PseudoLabelOptions`: a fresh
student and its view), and each method's dataclass (next to the method) lists only its own fields
and the defaults it changes. Each method class takes its options dataclass as one
``WHOLE_SECTION`` parameter (:mod:`mmssl.options`), so a recipe's flat keys are checked against the
dataclass's fields when it loads and the method receives them as one typed object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from mmssl.errors import ConfigError
from mmssl.semi.keys import UNLABELLED_VIEWS
from mmssl.semi.ood import GUARDS, OODGuard

Built = TypeVar("Built")


@dataclass(frozen=True)
class OODOptions:
    """The ``method.ood`` section: which guard scores the unlabelled pool, and its threshold.

    ``guard``: ``none`` | ``max_softmax`` | ``energy`` | ``knn`` (see :mod:`mmssl.semi.ood`);
    ``threshold``: an absolute score threshold, or None for the ``quantile`` of the labelled samples'
    scores; ``k``: neighbours of the ``knn`` score. Methods with phases score at their boundaries.
    """

    guard: str = "none"
    threshold: float | None = None
    quantile: float = 0.95
    k: int = 5

    def __post_init__(self) -> None:
        if self.guard not in GUARDS:
            raise ConfigError(f"guard must be one of {', '.join(GUARDS)}, got '{self.guard}'")
        if self.threshold is None and not 0.0 < self.quantile <= 1.0:
            raise ConfigError(f"quantile must be in (0, 1], got {self.quantile}")

    def make_guard(self) -> OODGuard:
        return OODGuard(self.guard, self.threshold, self.quantile, k=self.k)


@dataclass(frozen=True)
class ScheduledOODOptions(OODOptions):
    """``method.ood`` of a method with an unlabelled loss at every step: the pool is first scored at
    ``start`` (a fraction of training; the unlabelled loss waits for it), then every ``every`` steps
    (0: once)."""

    start: float = 0.2
    every: int = 0

    def due(self, step: int, total_steps: int) -> bool:
        """Whether the guard scores the pool after optimiser step ``step`` (1-based) of ``total_steps``."""
        first = max(1, round(self.start * total_steps))
        if step == first:
            return True
        return self.every > 0 and step > first and (step - first) % self.every == 0


@dataclass(frozen=True)
class SemiOptions:
    """What every semi-supervised method takes.

    ``unlabelled_weight``: weight of the unlabelled term (lambda_u); 0 trains on the labelled part
    only (the supervised-only baseline). ``ood``: the out-of-domain guard. ``pool_batch_size``: batch
    size when the whole unlabelled pool is predicted (guard scoring, pseudo-labels).
    """

    unlabelled_weight: float = 1.0
    ood: OODOptions = field(default_factory=OODOptions)
    pool_batch_size: int = 256


@dataclass(frozen=True)
class OnlineOptions(SemiOptions):
    """Methods whose unlabelled targets come from the model being trained, at every step (FixMatch,
    Mean Teacher, entropy minimisation). ``ema_decay``: keep an EMA copy of encoder + head with this
    decay (None: no copy); ``ood``: the guard, scored on a schedule."""

    ema_decay: float | None = None
    ood: ScheduledOODOptions = field(default_factory=ScheduledOODOptions)


@dataclass(frozen=True)
class PseudoLabelOptions(SemiOptions):
    """Methods that pseudo-label the whole pool at phase boundaries (self-training, data distillation).
    ``reinit_student``: each new student starts from the initial weights; ``student_view``: ``weak``
    or ``strong``, the unlabelled view the student trains on. The guard scores at the boundaries."""

    reinit_student: bool = False
    student_view: str = "weak"

    def __post_init__(self) -> None:
        view_key(self.student_view, "student_view")


def view_key(view: str, where: str) -> str:
    """The batch key of an unlabelled view named in a recipe (``weak`` / ``strong``)."""
    if view not in UNLABELLED_VIEWS:
        raise ConfigError(f"{where} must be one of {', '.join(UNLABELLED_VIEWS)}, got '{view}'")
    return UNLABELLED_VIEWS[view]
