"""The on-disk cache of approximate convex decompositions (Gadelha et al., ECCV 2020; CoACD, Wei et al.,
SIGGRAPH 2022).

Running CoACD costs seconds per mesh, so its results are kept: the hulls, not per-point labels (any
point sample of the shape can be labelled from them), keyed by a hash of the shape's content and every
setting that changes its decomposition (:func:`cache_key`), one ``.npz`` per shape, written atomically
(write, then rename) so concurrent runs never read a half-written entry. Fallback decompositions are
cached too (their ``method`` says so). A damaged entry (cut short, altered: the zip CRC-32 of every member
is checked as it is read; or arrays that do not describe hulls) is logged, naming the file, and
recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mmssl.cache import NPZ_ERRORS, cache_folder
from mmssl.modalities.pointcloud.acd.job import ACDJob, Decomposition
from mmssl.modalities.pointcloud.acd.params import ACDParams

log = logging.getLogger(__name__)

# Bump when decomposition or cache format changes, so old cache entries are not reused.
ACD_VERSION = 2


def default_acd_cache_dir() -> Path:
    """``$MMSSL_CACHE/acd`` or ``~/.cache/mmssl/acd``."""
    return cache_folder("acd")


def cache_key(job: ACDJob, params: ACDParams) -> str:
    """SHA-256 of :data:`ACD_VERSION`, ``params.settings()`` (plus the reconstruction for a point cloud)
    and the job's vertices, faces and normals."""
    h = hashlib.sha256()
    settings = params.settings()
    if job.faces is None:
        settings["reconstruction"] = params.reconstruction
    h.update(json.dumps({"version": ACD_VERSION, **settings}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(job.vertices, dtype=np.float32).tobytes())
    if job.faces is not None:
        h.update(b"faces" + np.ascontiguousarray(job.faces, dtype=np.int64).tobytes())
    if job.normals is not None:
        h.update(b"normals" + np.ascontiguousarray(job.normals, dtype=np.float32).tobytes())
    return h.hexdigest()


def _hulls(
    vertices: np.ndarray, faces: np.ndarray, vertex_counts: np.ndarray, face_counts: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The hulls an entry's arrays describe; ValueError when they do not fit together (counts that do not
    add up, a face naming a vertex outside its hull, non-finite coordinates)."""
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"vertices {vertices.shape} and faces {faces.shape} must be [n, 3]")
    if vertex_counts.shape != face_counts.shape or vertex_counts.ndim != 1 or len(vertex_counts) == 0:
        raise ValueError(f"vertex_counts {vertex_counts.shape} and face_counts {face_counts.shape} differ")
    if (vertex_counts < 0).any() or (face_counts < 0).any():
        raise ValueError("negative counts")
    if vertex_counts.sum() != len(vertices) or face_counts.sum() != len(faces):
        raise ValueError(
            f"counts add up to {vertex_counts.sum()} vertices / {face_counts.sum()} faces, "
            f"the arrays hold {len(vertices)} / {len(faces)}"
        )
    if not np.isfinite(vertices).all():
        raise ValueError("non-finite vertex coordinates")
    if vertex_counts.sum() == 0:  # an empty decomposition is stored with counts [0]
        return []
    vs = np.split(vertices, np.cumsum(vertex_counts)[:-1])
    fs = np.split(faces, np.cumsum(face_counts)[:-1])
    for i, (v, f) in enumerate(zip(vs, fs)):
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"hull {i}: a face names a vertex outside its {len(v)}")
    return list(zip(vs, fs))


def read_decomposition(source: str | Path | BinaryIO) -> Decomposition:
    """The decomposition a cache entry holds (a ``.npz`` file, or its bytes as a file object: the
    ``acd.npz`` member of a mesh shard, written by ``make_shards.py mesh --acd-cache``). Every member's
    zip CRC-32 is checked as it is read and the arrays must describe hulls; otherwise one of
    :data:`~mmssl.cache.NPZ_ERRORS`."""
    with np.load(source, allow_pickle=False) as z:
        arrays = {name: z[name] for name in ("vertices", "faces", "vertex_counts", "face_counts")}
        method = str(z["method"])
    return Decomposition(_hulls(**arrays), method)


class ACDCache:
    """``root/<key[:2]>/<key>.npz`` per decomposition; writes are atomic (temp file + rename), so
    concurrent runs never read a half-written entry. ``root=None`` disables caching."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> Decomposition | None:
        """The cached decomposition, or None (none cached, or a damaged entry: logged, naming the file,
        and recomputed by the caller)."""
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            return read_decomposition(path)
        except NPZ_ERRORS as err:
            log.warning(
                "ignoring unreadable ACD cache entry %s (%s: %s); recomputing it",
                path,
                type(err).__name__,
                err,
            )
            return None

    def save(self, key: str, decomposition: Decomposition) -> None:
        path = self.path(key)
        if path is None:
            return
        hulls = decomposition.hulls
        arrays = {
            "vertices": np.concatenate([v for v, _ in hulls]) if hulls else np.zeros((0, 3)),
            "faces": np.concatenate([f for _, f in hulls]) if hulls else np.zeros((0, 3), np.int64),
            "vertex_counts": np.array([len(v) for v, _ in hulls] or [0], dtype=np.int64),
            "face_counts": np.array([len(f) for _, f in hulls] or [0], dtype=np.int64),
            "method": np.array(decomposition.method),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except OSError as err:
            log.warning("could not write ACD cache entry %s (%s); continuing without it", path, err)
