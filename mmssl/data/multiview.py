"""N-view transforms as parameterised objects (as lightly's ``MultiViewTransform``).

``MultiViewTransform([t1, t2])(x)`` returns ``[t1(x), t2(x)]``: SimCLR and MoCo use one transform twice,
BYOL two asymmetric ones, multi-crop methods more. Each call draws from torch's global generator, which
the trainer seeds per (seed, epoch, sample), so views do not depend on worker count or order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class MultiViewTransform:
    """Apply each transform to the same input; returns the list of views (in the given order)."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        if not transforms:
            raise ValueError("MultiViewTransform needs at least one transform")
        self.transforms = list(transforms)

    @classmethod
    def repeated(cls, transform: Callable[[Any], Any], num_views: int = 2) -> MultiViewTransform:
        """The same transform ``num_views`` times (SimCLR, MoCo)."""
        return cls([transform] * num_views)

    def __call__(self, x: Any) -> list[Any]:
        return [t(x) for t in self.transforms]

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}])"
