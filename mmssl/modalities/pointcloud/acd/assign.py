"""Per-point component labels from a convex decomposition (Gadelha et al., ECCV 2020, sec. 3.1).

A point on the surface lies on (or very near) the boundary of the hull of the component it came from,
so it is assigned to the hull whose boundary is closest: ``label(p) = argmin_k |max_j (n_kj . p + b_kj)|``
over each hull's outward face planes ``(n, b)``, which is the exact distance to the boundary inside a
hull and a lower bound outside it.
"""

from __future__ import annotations

import numpy as np

from mmssl.modalities.pointcloud.acd.job import Decomposition


def assign_points(points: np.ndarray, decomposition: Decomposition) -> np.ndarray:
    """Component id ``int64 [N]`` of each point: the hull whose boundary is closest (see the module
    docstring); ``-1`` everywhere when the decomposition is empty. Points must be in the mesh's frame."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.asarray(points, dtype=np.float64)[:, :3]
    if not decomposition.hulls:
        return np.full(len(points), -1, dtype=np.int64)
    distance = np.empty((len(points), len(decomposition.hulls)))
    for k, (vertices, _) in enumerate(decomposition.hulls):
        try:
            equations = ConvexHull(vertices).equations  # [M, 4]: unit outward normal, offset
        except QhullError:
            equations = ConvexHull(vertices, qhull_options="QJ").equations
        distance[:, k] = (points @ equations[:, :3].T + equations[:, 3]).max(axis=1)
    return np.abs(distance).argmin(axis=1).astype(np.int64)
