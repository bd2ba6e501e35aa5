"""Typed extras of the image–text bundles, read by the ``zero_shot`` evaluator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset


@dataclass(frozen=True)
class ZeroShotTask:
    """A labelled image set for zero-shot classification: ``dataset[i]`` is ``{"input": image, "label": y}``
    (the evaluation contract) and ``class_names[y]`` is the word(s) the prompts are filled with. ``name``
    names the task in the metrics (``zeroshot_<name>_top1``)."""

    name: str
    dataset: Dataset
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"zero-shot task '{self.name}' needs at least 2 classes, got {self.class_names}")


def zero_shot_tasks(extras: Iterable[Any]) -> list[ZeroShotTask]:
    """Every :class:`ZeroShotTask` among ``extras``, in order."""
    return [e for e in extras if isinstance(e, ZeroShotTask)]
