"""What approximate convex decomposition takes and gives: :class:`ACDJob` in, :class:`Decomposition` out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ACDJob:
    """One shape to decompose: a mesh (``vertices``, ``faces``) or, with ``faces=None``, a point
    cloud (``vertices`` are the points; ``normals`` optional) whose surface is reconstructed first."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray | None = None
    normals: np.ndarray | None = None


@dataclass
class Decomposition:
    """Convex components (each a vertex array ``[k, 3]`` and faces ``[m, 3]``) and how they were
    obtained: ``"coacd"`` (whole mesh), ``"coacd per piece (<n> pieces, <c> convex)"``,
    ``"ball_pivoting+coacd"`` (point cloud), or ``"fallback:<kind> (<reason>)"``."""

    hulls: list[tuple[np.ndarray, np.ndarray]]
    method: str

    @property
    def is_fallback(self) -> bool:
        return self.method.startswith("fallback")

    def __len__(self) -> int:
        return len(self.hulls)
