"""Approximate convex decomposition (ACD) labels for the ACD pretext (Gadelha et al., ECCV 2020, sec. 3.1).

Each mesh is decomposed offline into approximately convex components with CoACD (Wei et al.,
SIGGRAPH 2022; the ``coacd`` package); every sampled surface point then gets the id of its
component. A point on the surface lies on (or very near) the boundary of the hull of the component
it came from, so it is assigned to the hull whose boundary is closest:
``label(p) = argmin_k |max_j (n_kj . p + b_kj)|`` over each hull's outward face planes ``(n, b)``,
which is the exact distance to the boundary inside a hull and a lower bound outside it.

A mesh made of several disconnected pieces (shapes built from primitives, many CAD models) is
decomposed piece by piece, and a piece that is already a closed convex solid is its own component
without a CoACD call (:func:`decompose`; ``ACDParams.split_pieces``).

Running CoACD is the expensive part (seconds per mesh), so:

- results (the hulls, not per-point labels: any point sample can be labelled from them) are cached
  on disk, keyed by a hash of the mesh content and every decomposition parameter, written
  atomically (write, then rename);
- meshes run in parallel worker processes (``workers``), each with one OpenMP thread by default,
  with a tqdm progress bar;
- each mesh has a wall-clock ``timeout_s``: CoACD can hang for minutes on self-intersecting input
  with ``preprocess_mode="off"``. A worker past its deadline is killed and the mesh gets a
  fallback decomposition, logged: ``connected_components`` (the convex hull of each connected
  piece of the mesh, which for meshes built from primitives is one hull per primitive) or
  ``single`` (one hull). Fallbacks are cached too (the log says so when they are reused).

Point clouds without a mesh (ShapeNetPart) first get a surface reconstructed with open3d (ball
pivoting over the given or estimated normals, or screened Poisson); the caller logs that it did.

This module imports no torch (worker processes start faster); labels are numpy ``int64``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np

from mmssl.cache import cache_folder

log = logging.getLogger(__name__)

# Bump when decomposition or cache format changes, so old cache entries are not reused.
ACD_VERSION = 2
FALLBACKS: tuple[str, ...] = ("connected_components", "single")
RECONSTRUCTIONS: tuple[str, ...] = ("ball_pivoting", "poisson")


def default_acd_cache_dir() -> Path:
    """``$MMSSL_CACHE/acd`` or ``~/.cache/mmssl/acd``."""
    return cache_folder("acd")


@dataclass(frozen=True)
class ACDParams:
    """CoACD settings (the keyword arguments of ``coacd.run_coacd``), the per-piece split, and for
    point clouds the surface reconstruction. The CoACD defaults here are cheaper than CoACD's own
    (resolution 2000, preprocess_resolution 50, mcts_iterations 150, mcts_nodes 20): a few times
    faster for a similar number of components on shapes built from primitives; see
    ``benchmarks/acd_cache.py``."""

    threshold: float = 0.05  # concavity threshold: lower -> more, finer components
    resolution: int = 1000  # samples per hull for the concavity metric (CoACD default 2000)
    preprocess_mode: str = "auto"  # manifold pre-processing: "auto" | "on" | "off"
    preprocess_resolution: int = 30  # voxel resolution of that pre-processing (default 50)
    mcts_iterations: int = 50  # (default 150)
    mcts_nodes: int = 10  # (default 20)
    mcts_max_depth: int = 3
    max_convex_hull: int = -1  # -1: no limit
    seed: int = 0
    # Decompose each connected piece on its own, a closed convex piece being its own component
    # (no CoACD call), when a mesh has 2..max_pieces pieces; otherwise the whole mesh goes to CoACD.
    split_pieces: bool = True
    max_pieces: int = 32
    reconstruction: str = "ball_pivoting"  # point clouds only: "ball_pivoting" | "poisson"

    def __post_init__(self) -> None:
        if self.preprocess_mode not in ("auto", "on", "off"):
            raise ValueError(f"preprocess_mode must be auto, on or off, got '{self.preprocess_mode}'")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}")

    def coacd_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``coacd.run_coacd``."""
        d = dataclasses.asdict(self)
        for key in ("reconstruction", "split_pieces", "max_pieces"):
            d.pop(key)
        return d

    def settings(self) -> dict[str, Any]:
        """Everything that changes a mesh's decomposition (the cache key), reconstruction aside."""
        d = dataclasses.asdict(self)
        d.pop("reconstruction")
        return d


@dataclass
class ACDJob:
    """One shape to decompose: a mesh (``vertices``, ``faces``) or, with ``faces=None``, a point
    cloud (``vertices`` are the points; ``normals`` optional) whose surface is reconstructed first."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray | None = None
    normals: np.ndarray | None = None

    def cache_key(self, params: ACDParams) -> str:
        h = hashlib.sha256()
        settings = params.settings()
        if self.faces is None:
            settings["reconstruction"] = params.reconstruction
        h.update(json.dumps({"version": ACD_VERSION, **settings}, sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.vertices, dtype=np.float32).tobytes())
        if self.faces is not None:
            h.update(b"faces" + np.ascontiguousarray(self.faces, dtype=np.int64).tobytes())
        if self.normals is not None:
            h.update(b"normals" + np.ascontiguousarray(self.normals, dtype=np.float32).tobytes())
        return h.hexdigest()


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


@dataclass
class ACDStats:
    """What one :func:`decompose_many` call did."""

    total: int = 0
    cached: int = 0
    computed: int = 0
    fallbacks: list[str] = field(default_factory=list)  # names of shapes that got a fallback
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------ cache


class ACDCache:
    """``root/<key[:2]>/<key>.npz`` per decomposition; writes are atomic (temp file + rename), so
    concurrent runs never read a half-written entry. ``root=None`` disables caching."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> Decomposition | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                vertex_counts, face_counts = z["vertex_counts"], z["face_counts"]
                vs = np.split(z["vertices"], np.cumsum(vertex_counts)[:-1])
                fs = np.split(z["faces"], np.cumsum(face_counts)[:-1])
                method = str(z["method"])
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring unreadable ACD cache entry %s (%s)", path, err)
            return None
        if vertex_counts.sum() == 0:  # an empty decomposition is stored with counts [0]
            vs, fs = [], []
        return Decomposition(list(zip(vs, fs)), method)

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


# -------------------------------------------------------------------------------- decomposition


def reconstruct_surface(
    points: np.ndarray, normals: np.ndarray | None = None, method: str = "ball_pivoting"
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a point cloud with open3d: ``(vertices [V, 3], faces [F, 3])``.

    ``ball_pivoting`` (Bernardini et al. 1999) with radii 1, 2 and 4 times the mean nearest-neighbour
    spacing keeps to the given points; ``poisson`` (Kazhdan & Hoppe 2013, depth 6) fits a watertight
    surface, and its lowest-density 5 % of vertices (surface invented far from any point) are
    removed. Missing or zero normals are estimated (16 neighbours) and oriented consistently.
    """
    import open3d as o3d

    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
        if normals is not None and np.abs(normals).sum() > 0:
            cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, dtype=np.float64))
        else:
            cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
            cloud.orient_normals_consistent_tangent_plane(10)
        if method == "ball_pivoting":
            spacing = float(np.mean(cloud.compute_nearest_neighbor_distance()))
            radii = o3d.utility.DoubleVector([spacing, 2 * spacing, 4 * spacing])
            mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(cloud, radii)
        elif method == "poisson":
            mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=6)
            density = np.asarray(density)
            mesh.remove_vertices_by_mask(density < np.quantile(density, 0.05))
        else:
            raise ValueError(f"unknown reconstruction '{method}'; choose one of {', '.join(RECONSTRUCTIONS)}")
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles, dtype=np.int64)
    if len(faces) == 0:
        raise ValueError(f"{method} reconstruction produced no triangles from {len(points)} points")
    return vertices, faces


def run_coacd(
    vertices: np.ndarray, faces: np.ndarray, params: ACDParams
) -> list[tuple[np.ndarray, np.ndarray]]:
    """CoACD on one mesh: the list of convex parts ``(vertices, faces)``."""
    import coacd

    coacd.set_log_level("error")
    parts = coacd.run_coacd(coacd.Mesh(np.asarray(vertices), np.asarray(faces)), **params.coacd_kwargs())
    if not parts:
        raise RuntimeError("coacd returned no components")
    return [(np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)) for v, f in parts]


def decompose(job: ACDJob, params: ACDParams) -> Decomposition:
    """Decompose one shape in this process (no timeout; see :func:`decompose_many`).

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
    hulls: list[tuple[np.ndarray, np.ndarray]] = []
    convex = 0
    for piece in pieces:
        used, local = np.unique(faces[piece], return_inverse=True)
        piece_vertices, piece_faces = vertices[used], local.reshape(-1, 3)
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
        used, local = np.unique(faces[piece], return_inverse=True)
        hull = convex_piece_hull(vertices[used], local.reshape(-1, 3))
        if hull is None:
            return None
        hulls.append(hull)
    return Decomposition(hulls, f"coacd per piece ({len(pieces)} pieces, {len(pieces)} convex)")


def connected_pieces(vertices: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
    """Face indices of each connected piece of a mesh. Vertices at the same position (to 1e-6 of the
    mesh size) are merged first, so per-face duplicated vertices (texture seams) do not split pieces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return []
    f = _merged_indices(vertices)[faces]
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    n = int(f.max()) + 1
    _, label = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)))
    face_piece = label[f[:, 0]]
    return [np.flatnonzero(face_piece == c) for c in np.unique(face_piece)]


def convex_piece_hull(
    vertices: np.ndarray, faces: np.ndarray, tolerance: float = 1e-3
) -> tuple[np.ndarray, np.ndarray] | None:
    """The convex hull of a piece that is a closed convex solid, else None.

    Closed (every edge shared by exactly two triangles) and outward-facing, the divergence-theorem
    volume ``sum a . (b x c) / 6`` is the enclosed volume; the piece is convex when that volume
    equals its hull's to ``tolerance`` (relative). An open surface or a concave solid fails the test.
    """
    hull = _hull(vertices)
    if hull is None or not _is_closed(vertices, faces):
        return None
    volume, hull_volume = _signed_volume(vertices, faces), _signed_volume(*hull)
    if hull_volume <= 0 or abs(volume - hull_volume) > tolerance * hull_volume:
        return None
    return hull


def _merged_indices(vertices: np.ndarray) -> np.ndarray:
    """One index per distinct position (to 1e-6 of the extent): duplicated vertices share it."""
    vertices = np.asarray(vertices, dtype=np.float64)
    scale = max(float(np.ptp(vertices, axis=0).max()), 1e-12)
    _, merged = np.unique(np.round(vertices / scale, 6), axis=0, return_inverse=True)
    return merged.ravel()


def _is_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Every undirected edge (vertices merged by position) belongs to exactly two triangles."""
    f = _merged_indices(vertices)[np.asarray(faces, dtype=np.int64)]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    v = np.asarray(vertices, dtype=np.float64)
    return float(np.einsum("ij,ij->i", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])).sum() / 6)


def _hull(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
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


def fallback_decomposition(job: ACDJob, kind: str, reason: str) -> Decomposition:
    """``connected_components``: one hull per connected piece of the mesh (vertices merged by
    position first, so per-face duplicated vertices do not split pieces); ``single``: one hull of
    everything. Point clouds (no faces) always get ``single``."""
    if kind not in FALLBACKS:
        raise ValueError(f"unknown fallback '{kind}'; choose one of {', '.join(FALLBACKS)}")
    vertices = np.asarray(job.vertices, dtype=np.float64)
    hulls: list[tuple[np.ndarray, np.ndarray]] = []
    if kind == "connected_components" and job.faces is not None and len(job.faces):
        faces = np.asarray(job.faces, dtype=np.int64)
        for piece in connected_pieces(vertices, faces):
            hull = _hull(vertices[np.unique(faces[piece])])
            if hull is not None:
                hulls.append(hull)
    else:
        kind = "single"
    if not hulls:
        kind = "single"
        whole = _hull(vertices)
        hulls = [whole] if whole is not None else []
    return Decomposition(hulls, f"fallback:{kind} ({reason})")


# ------------------------------------------------------------------------------------ assignment


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


# ---------------------------------------------------------------------------------- parallel runs


def _worker_main(conn, threads: int) -> None:  # pragma: no cover - runs in a child process
    """Worker loop: receive ``(job_index, job, params)``, send ``(job_index, ("ok", decomposition))``
    or ``(job_index, ("error", message))``; ``None`` stops it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before coacd loads its OpenMP runtime
    while True:
        message = conn.recv()
        if message is None:
            return
        index, job, params = message
        try:
            result: tuple[str, Any] = ("ok", decompose(job, params))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which falls back
            result = ("error", f"{type(err).__name__}: {err}")
        conn.send((index, result))


class _Worker:
    def __init__(self, ctx, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, threads), daemon=True)
        self.process.start()
        child.close()
        self.job: int | None = None
        self.started = 0.0

    def submit(self, index: int, job: ACDJob, params: ACDParams) -> None:
        self.job, self.started = index, time.monotonic()
        self.conn.send((index, job, params))

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def decompose_many(
    jobs: list[ACDJob],
    params: ACDParams | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    timeout_s: float = 60.0,
    fallback: str = "connected_components",
    threads_per_worker: int = 1,
    progress: bool = True,
) -> tuple[list[Decomposition], ACDStats]:
    """Decompose every job, reading and filling the cache; returns decompositions in job order.

    Meshes made only of convex pieces (:func:`decompose_convex_pieces`) are done here at once; the
    others go to CoACD. ``workers >= 1``: that many worker processes (spawned, started only when some
    mesh needs CoACD), each mesh killed after ``timeout_s``
    seconds and given the ``fallback`` decomposition; a worker that crashes is replaced.
    ``workers=0``: run in this process, one after the other, with no timeout (a hung CoACD hangs the
    caller), errors still fall back. ``cache_dir=None`` disables the cache.
    """
    from tqdm.auto import tqdm

    if fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback '{fallback}'; choose one of {', '.join(FALLBACKS)}")
    params = params or ACDParams()
    cache = ACDCache(cache_dir)
    start = time.perf_counter()
    stats = ACDStats(total=len(jobs))
    results: list[Decomposition | None] = [None] * len(jobs)
    keys = [job.cache_key(params) for job in jobs]
    todo = []
    for i, key in enumerate(keys):
        results[i] = cache.load(key)
        if results[i] is None:
            todo.append(i)
        elif results[i].is_fallback:
            stats.fallbacks.append(jobs[i].name)
    stats.cached = len(jobs) - len(todo)
    if stats.fallbacks:
        log.info(
            "ACD: %d cached decompositions are fallbacks (e.g. %s)", len(stats.fallbacks), stats.fallbacks[0]
        )

    def finish(i: int, decomposition: Decomposition) -> None:
        if decomposition.is_fallback:
            stats.fallbacks.append(jobs[i].name)
            log.warning(
                "ACD of %s: %s, %d components", jobs[i].name, decomposition.method, len(decomposition)
            )
        results[i] = decomposition
        cache.save(keys[i], decomposition)
        bar.update(1)

    bar = tqdm(total=len(todo), desc="ACD (coacd)", unit="mesh", disable=not progress or not todo)
    try:
        needs_coacd = []
        for i in todo:  # meshes made only of convex pieces need no CoACD, hence no worker
            quick = decompose_convex_pieces(jobs[i], params)
            if quick is None:
                needs_coacd.append(i)
            else:
                finish(i, quick)
        if needs_coacd and workers <= 0:
            for i in needs_coacd:
                try:
                    finish(i, decompose(jobs[i], params))
                except Exception as err:  # noqa: BLE001 - any failure of coacd/open3d falls back
                    finish(i, fallback_decomposition(jobs[i], fallback, f"{type(err).__name__}: {err}"))
        elif needs_coacd:
            _run_pool(jobs, needs_coacd, params, workers, timeout_s, fallback, threads_per_worker, finish)
    finally:
        bar.close()
    stats.computed = len(todo)
    stats.seconds = time.perf_counter() - start
    if todo:
        log.info(
            "ACD: %d shapes (%d cached, %d computed, %d fallbacks) in %.1fs",
            stats.total,
            stats.cached,
            stats.computed,
            len(stats.fallbacks),
            stats.seconds,
        )
    return [r for r in results if r is not None], stats


def _run_pool(jobs, todo, params, workers, timeout_s, fallback, threads, finish) -> None:
    ctx = mp.get_context("spawn")  # no fork: the parent may hold torch/OpenMP threads
    pending = deque(todo)
    pool = [_Worker(ctx, threads) for _ in range(min(workers, len(todo)))]
    try:
        while pending or any(w.job is not None for w in pool):
            for w in pool:
                if w.job is None and pending:
                    i = pending.popleft()
                    w.submit(i, jobs[i], params)
            busy = [w for w in pool if w.job is not None]
            now = time.monotonic()
            wait_s = max(0.0, min(w.started + timeout_s - now for w in busy))
            ready = wait([w.conn for w in busy], timeout=wait_s)
            for w in busy:
                i = w.job
                if w.conn in ready:
                    try:
                        _, (status, payload) = w.conn.recv()
                    except (EOFError, OSError):  # the worker died (e.g. a segfault in coacd)
                        status, payload = "error", f"worker exited with code {w.process.exitcode}"
                        pool[pool.index(w)] = _restart(w, ctx, threads)
                    else:
                        w.job = None
                    if status == "ok":
                        finish(i, payload)
                    else:
                        finish(i, fallback_decomposition(jobs[i], fallback, payload))
                elif time.monotonic() - w.started >= timeout_s:
                    pool[pool.index(w)] = _restart(w, ctx, threads)
                    finish(
                        i, fallback_decomposition(jobs[i], fallback, f"coacd timed out after {timeout_s:g}s")
                    )
    finally:
        for w in pool:
            w.stop(kill=w.job is not None)


def _restart(worker: _Worker, ctx, threads: int) -> _Worker:
    worker.stop(kill=True)
    return _Worker(ctx, threads)
