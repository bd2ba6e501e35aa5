"""The one bundle a dataset builder returns: what to pretrain on and what to evaluate on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset


@dataclass
class DataBundle:
    """Datasets for one recipe.

    ``pretrain`` yields what the method's ``forward`` expects (e.g. ``{"views": [v1, v2]}``);
    ``eval_train`` / ``eval_test`` yield ``{"input": tensor, "label": int}`` with a deterministic
    evaluation transform, for the kNN / linear / few-shot evaluators.
    """

    pretrain: Dataset
    eval_train: Dataset | None = None
    eval_test: Dataset | None = None
    num_classes: int = 0
    info: dict[str, Any] = field(default_factory=dict)
