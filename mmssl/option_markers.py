"""Annotations that give a builder parameter its recipe meaning (read by :mod:`mmssl.options`).

Kept apart from the validation machinery, which uses the registry: library code can declare its options
with these markers without importing anything that reaches other components.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WholeSection:
    """Annotation marker: the parameter receives the whole section as one dataclass, e.g.
    ``options: Annotated[FixMatchOptions, WHOLE_SECTION]`` — the section's keys are that dataclass's fields
    (a method with many options, or options shared by a family of methods, declares them once)."""


WHOLE_SECTION = WholeSection()


@dataclass(frozen=True)
class Components:
    """Annotation marker: the option maps keys to sections ``{key: {name: <registered kind>, ...}}``, e.g.
    ``towers: Annotated[dict[str, Any], Components("encoder")]``."""

    kind: str


class ScoresLabelledSplits:
    """Base of the options of an evaluator (or monitor) that scores the dataset's labelled ``eval_train`` /
    ``eval_test``: the recipe loader refuses it for a dataset that has none with the recipe's options."""
