"""Decompose one shape into approximately convex components (Gadelha et al., ECCV 2020, sec. 3.1, with
CoACD: Wei et al., SIGGRAPH 2022, the ``coacd`` package), in this process.

A mesh made of several disconnected pieces (shapes built from primitives, many CAD models) is
decomposed piece by piece, and a piece that is already a closed convex solid is its own component
without a CoACD call (``ACDParams.split_pieces``). A point cloud first gets a surface reconstructed
(:mod:`~mmssl.modalities.pointcloud.acd.reconstruct`). When CoACD fails or times out, a shape gets a
:func:`fallback_decomposition`. Many shapes, with the cache, worker processes and timeouts:
:func:`mmssl.modalities.pointcloud.acd.batch.decompose_many`.
"""

from __future__ import annotations

import numpy as np

from mmssl.modalities.pointcloud.acd.geometry import (
    connected_pieces,
    convex_hull,
    convex_piece_hull,
    piece_mesh,
)
from mmssl.modalities.pointcloud.acd.job import ACDJob, Decomposition
from mmssl.modalities.pointcloud.acd.params import FALLBACKS, ACDParams
from mmssl.modalities.pointcloud.acd.reconstruct import reconstruct_surface

Hull = tuple[np.ndarray, np.ndarray]


def run_coacd(vertices: np.ndarray, faces: np.ndarray, params: ACDParams) -> list[Hull]:
    """CoACD on one mesh: the list of convex parts ``(vertices, faces)``."""
    import coacd

    coacd.set_log_level("error")
    parts = coacd.run_coacd(coacd.Mesh(np.asarray(vertices), np.asarray(faces)), **params.coacd_kwargs())
    if not parts:
        raise RuntimeError("coacd returned no components")
    return [(np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)) for v, f in parts]


def decompose(job: ACDJob, params: ACDParams) -> Decomposition:
    """Decompose one shape in this process (no timeout; see ``decompose_many``).

    Meshes with ``params.split_pieces`` and 2..``max_pieces`` connected pieces are decomposed piece
    by piece: a closed convex piece (a box, a cylinder ...) is one component as it is, any other
    piece goes to CoACD. CoACD itself would not join disconnected pieces into one convex component
    unless they nearly touch, and skipping it for pieces that are already convex makes shapes built
    from primitives (and many CAD models) cost milliseconds instead of seconds. Reconstructed
    surfaces (point clouds) always go to CoACD whole: their pieces are reconstruction artefacts.
    """
    if job.faces is None:
        vertices, faces = reconstruct_surface(job.vertices, job.normals, params.reconstruction)
        return Decomposition(run_coacd(vertices, faces, params), f"{params.reconstruction}+coacd")
    vertices = np.asarray(job.vertices, dtype=np.float64)
    faces = np.asarray(job.faces, dtype=np.int64)
    pieces = connected_pieces(vertices, faces) if params.split_pieces else [np.arange(len(faces))]
    if not 2 <= len(pieces) <= params.max_pieces:
        return Decomposition(run_coacd(vertices, faces, params), "coacd")
    hulls: list[Hull] = []
    convex = 0
    for piece in pieces:
        piece_vertices, piece_faces = piece_mesh(vertices, faces, piece)
        hull = convex_piece_hull(piece_vertices, piece_faces)
        if hull is not None:
            hulls.append(hull)
            convex += 1
        else:
            hulls += run_coacd(piece_vertices, piece_faces, params)
    return Decomposition(hulls, f"coacd per piece ({len(pieces)} pieces, {convex} convex)")


def decompose_convex_pieces(job: ACDJob, params: ACDParams) -> Decomposition | None:
    """The decomposition of a mesh whose pieces are all closed convex solids (one component each),
    as :func:`decompose` would return it, or None when CoACD is needed. Cheap: callers try it before
    starting worker processes."""
    if job.faces is None or not params.split_pieces:
        return None
    vertices = np.asarray(job.vertices, dtype=np.float64)
    faces = np.asarray(job.faces, dtype=np.int64)
    pieces = connected_pieces(vertices, faces)
    if not 2 <= len(pieces) <= params.max_pieces:
        return None
    hulls = []
    for piece in pieces:
        hull = convex_piece_hull(*piece_mesh(vertices, faces, piece))
        if hull is None:
            return None
        hulls.append(hull)
    return Decomposition(hulls, f"coacd per piece ({len(pieces)} pieces, {len(pieces)} convex)")


def fallback_decomposition(job: ACDJob, kind: str, reason: str) -> Decomposition:
    """``connected_components``: one hull per connected piece of the mesh (vertices merged by
    position first, so per-face duplicated vertices do not split pieces); ``single``: one hull of
    everything. Point clouds (no faces) always get ``single``."""
    if kind not in FALLBACKS:
        raise ValueError(f"unknown fallback '{kind}'; choose one of {', '.join(FALLBACKS)}")
    vertices = np.asarray(job.vertices, dtype=np.float64)
    hulls: list[Hull] = []
    if kind == "connected_components" and job.faces is not None and len(job.faces):
        faces = np.asarray(job.faces, dtype=np.int64)
        for piece in connected_pieces(vertices, faces):
            hull = convex_hull(vertices[np.unique(faces[piece])])
            if hull is not None:
                hulls.append(hull)
    else:
        kind = "single"
    if not hulls:
        kind = "single"
        whole = convex_hull(vertices)
        hulls = [whole] if whole is not None else []
    return Decomposition(hulls, f"fallback:{kind} ({reason})")
