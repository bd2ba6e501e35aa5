"""Mesh geometry for approximate convex decomposition: connected pieces, closedness, volumes and convex
hulls (the shortcut of :func:`~.decompose.decompose` for pieces that are already convex, and the
fallback decompositions)."""

from __future__ import annotations

import numpy as np


def connected_pieces(vertices: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
    """Face indices of each connected piece of a mesh. Vertices at the same position (to 1e-6 of the
    mesh size) are merged first, so per-face duplicated vertices (texture seams) do not split pieces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return []
    f = merged_indices(vertices)[faces]
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    n = int(f.max()) + 1
    _, label = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)))
    face_piece = label[f[:, 0]]
    return [np.flatnonzero(face_piece == c) for c in np.unique(face_piece)]


def piece_mesh(vertices: np.ndarray, faces: np.ndarray, piece: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sub-mesh ``(vertices, faces)`` of the faces ``piece``, re-indexed to its own vertices."""
    used, local = np.unique(faces[piece], return_inverse=True)
    return vertices[used], local.reshape(-1, 3)


def convex_piece_hull(
    vertices: np.ndarray, faces: np.ndarray, tolerance: float = 1e-3
) -> tuple[np.ndarray, np.ndarray] | None:
    """The convex hull of a piece that is a closed convex solid, else None.

    Closed (every edge shared by exactly two triangles) and outward-facing, the divergence-theorem
    volume ``sum a . (b x c) / 6`` is the enclosed volume; the piece is convex when that volume
    equals its hull's to ``tolerance`` (relative). An open surface or a concave solid fails the test.
    """
    hull = convex_hull(vertices)
    if hull is None or not is_closed(vertices, faces):
        return None
    volume, hull_volume = signed_volume(vertices, faces), signed_volume(*hull)
    if hull_volume <= 0 or abs(volume - hull_volume) > tolerance * hull_volume:
        return None
    return hull


def merged_indices(vertices: np.ndarray) -> np.ndarray:
    """One index per distinct position (to 1e-6 of the extent): duplicated vertices share it."""
    vertices = np.asarray(vertices, dtype=np.float64)
    scale = max(float(np.ptp(vertices, axis=0).max()), 1e-12)
    _, merged = np.unique(np.round(vertices / scale, 6), axis=0, return_inverse=True)
    return merged.ravel()


def is_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Every undirected edge (vertices merged by position) belongs to exactly two triangles."""
    f = merged_indices(vertices)[np.asarray(faces, dtype=np.int64)]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Divergence-theorem volume: positive for a closed surface whose triangles face outwards."""
    v = np.asarray(vertices, dtype=np.float64)
    return float(np.einsum("ij,ij->i", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])).sum() / 6)


def convex_hull(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Convex hull ``(vertices, faces)`` of a point set, faces wound outwards; None when it has fewer
    than 4 distinct points."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    if len(points) < 4:
        return None
    try:
        hull = ConvexHull(points)
    except QhullError:  # flat piece: joggle it into a (very thin) solid
        hull = ConvexHull(points, qhull_options="QJ")
    simplices = hull.simplices.copy()
    # qhull does not orient its facets: flip those whose winding disagrees with the outward normal
    a, b, c = (points[simplices[:, k]] for k in range(3))
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), hull.equations[:, :3]) < 0
    simplices[inward] = simplices[inward][:, ::-1]
    used = np.unique(simplices)
    remap = np.full(len(points), -1)
    remap[used] = np.arange(len(used))
    return points[used], remap[simplices]
