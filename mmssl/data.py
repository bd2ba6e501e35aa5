"""The one bundle a dataset builder returns: what to pretrain on and what to evaluate on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset


@dataclass
class DataBundle:
    """Datasets for one recipe.

    ``pretrain`` yields what the method's ``forward`` expects (e.g. ``{"views": [v1, v2]}``);
    ``eval_train`` / ``eval_test`` yield ``{"input": tensor, "label": int}`` with a deterministic
    evaluation transform, for the kNN / linear / few-shot evaluators.

    ``batch_transform`` (optional) runs on each whole batch after it reached the training device,
    without gradients: batched augmentation that draws per-sample parameters in one go (on the
    GPU when training there) instead of per-sample transforms in data-loader workers.
    """

    pretrain: Dataset
    eval_train: Dataset | None = None
    eval_test: Dataset | None = None
    num_classes: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    batch_transform: Callable[[Any], Any] | None = None
