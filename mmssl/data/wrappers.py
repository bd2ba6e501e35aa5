"""Map-style dataset wrappers that turn ``(sample, label)`` items into the batch contract.

Every modality's base datasets yield ``(sample, label)``; these wrappers give the dictionaries that
methods and evaluators read (keys from :mod:`mmssl.data.keys`), so no modality writes its own:

* :class:`LabelledItems`: ``{"input": transform(x), "label": y}``, the evaluation contract.
* :class:`MultiViewItems`: ``{"views": views(x), "index": i}``, labels withheld (two-view pretraining).
* :class:`SingleItems`: ``{key: transform(x), "label": y, "index": i}`` (single-input pretext tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from mmssl.data.keys import INDEX, INPUT, LABEL, VIEWS


def _identity(x: Any) -> Any:
    return x


class LabelledItems(Dataset):
    """``base[i] = (x, y)`` -> ``{"input": transform(x), "label": int(y)}``; ``targets`` as the base's."""

    def __init__(self, base: Dataset, transform: Callable[[Any], Any] | None = None) -> None:
        self.base, self.transform = base, transform or _identity
        self.targets: list[int] = list(getattr(base, "targets", []))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        x, y = self.base[index]
        return {INPUT: self.transform(x), LABEL: int(y)}


class MultiViewItems(Dataset):
    """``base[i] = (x, _)`` -> ``{"views": views(x), "index": i}``; ``views`` returns a list of tensors
    (e.g. a :class:`~mmssl.data.multiview.MultiViewTransform`)."""

    def __init__(self, base: Dataset, views: Callable[[Any], list[Any]]) -> None:
        self.base, self.views = base, views

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        x, _ = self.base[index]
        return {VIEWS: self.views(x), INDEX: index}


class SingleItems(Dataset):
    """``base[i] = (x, y)`` -> ``{key: transform(x), "label": int(y), "index": i}``."""

    def __init__(self, base: Dataset, transform: Callable[[Any], Any] | None, key: str) -> None:
        self.base, self.transform, self.key = base, transform or _identity, key

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        x, y = self.base[index]
        return {self.key: self.transform(x), LABEL: int(y), INDEX: index}
