"""Point-cloud datasets and their registered builders (``procedural_parts``, ``shapenetpart``,
``mesh_folder``).

Items (all points centred and scaled into the unit sphere, per shape):

- pretraining (ACD pretext): ``{"points": float32 [N, 3], "normals": float32 [N, 3],
  "acd": int64 [N] (convex component of each point, -1 when unknown), "index": int}``;
- part segmentation (``eval_train`` holds every labelled training shape, ``eval_test`` the test split):
  ``{"points", "normals", "parts": int64 [N] (GLOBAL ShapeNetPart part ids), "category": int,
  "index": int}`` plus ``"input"`` (= points) and ``"label"`` (= category), so the generic
  kNN / linear / few-shot evaluators can also classify shapes. ``category`` indexes
  ``info["part_seg"]["categories"]``; the datasets' ``targets`` list it per item without loading.

``info["part_seg"] = {"categories": [names], "parts_per_category": {category index: [global part
ids]}, "num_parts": 50}``; ``info["acd"]`` says how the ACD labels were obtained (cached / computed
/ fallbacks, mean number of components).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.data import DataBundle
from mmssl.data.keys import INDEX
from mmssl.data.source import data_source
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.pointcloud import procedural
from mmssl.modalities.pointcloud.acd import (
    FALLBACKS,
    RECONSTRUCTIONS,
    ACDJob,
    ACDParams,
    ACDStats,
    Decomposition,
    assign_points,
    decompose_many,
    default_acd_cache_dir,
)
from mmssl.modalities.pointcloud.io import MESH_EXTENSIONS, normalize_unit_sphere, read_mesh, sample_points
from mmssl.modalities.pointcloud.keys import ACD_LABELS, NORMALS, POINTS
from mmssl.modalities.pointcloud.procedural import (
    DEFAULT_CATEGORIES,
    PROCEDURAL_CATEGORIES,
    PartMesh,
    procedural_split,
)
from mmssl.modalities.pointcloud.shapenetpart import NUM_PARTS, SHAPENETPART_PARTS, ShapeNetPart

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- datasets


class PointCloudPretrainDataset(Dataset):
    """In-memory pretraining items ``{"points", "normals", "acd", "index"}`` (see module docstring)."""

    def __init__(self, points: torch.Tensor, normals: torch.Tensor, acd: torch.Tensor) -> None:
        if not (len(points) == len(normals) == len(acd)):
            raise ValueError("points, normals and acd must have the same number of shapes")
        self.points, self.normals, self.acd = points, normals, acd

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "points": self.points[index],
            "normals": self.normals[index],
            "acd": self.acd[index],
            "index": index,
        }


class PartSegDataset(Dataset):
    """In-memory part-segmentation items (see module docstring); ``targets``: category per item."""

    def __init__(
        self, points: torch.Tensor, normals: torch.Tensor, parts: torch.Tensor, categories: list[int]
    ) -> None:
        self.points, self.normals, self.parts = points, normals, parts
        self.targets: list[int] = list(categories)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        points, category = self.points[index], self.targets[index]
        return {
            "points": points,
            "normals": self.normals[index],
            "parts": self.parts[index],
            "category": category,
            "index": index,
            "input": points,
            "label": category,
        }


class _ShapeNetPartItems(Dataset):
    """A :class:`ShapeNetPart` with the generic ``input`` / ``label`` keys added to its items."""

    def __init__(self, base: ShapeNetPart) -> None:
        self.base = base
        self.targets: list[int] = base.targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        return {**item, "input": item["points"], "label": item["category"]}


# ------------------------------------------------------------------------------------ helpers


def _acd_params(
    threshold: float,
    resolution: int,
    preprocess_mode: str,
    preprocess_resolution: int,
    mcts_iterations: int,
    mcts_nodes: int,
    reconstruction: str = "ball_pivoting",
    split_pieces: bool = True,
) -> ACDParams:
    try:
        return ACDParams(
            threshold=threshold,
            resolution=resolution,
            preprocess_mode=preprocess_mode,
            preprocess_resolution=preprocess_resolution,
            mcts_iterations=mcts_iterations,
            mcts_nodes=mcts_nodes,
            split_pieces=split_pieces,
            reconstruction=reconstruction,
        )
    except ValueError as err:
        raise DataError(f"bad ACD option: {err}") from err


def _check_fallback(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise DataError(f"unknown acd_fallback '{fallback}'; choose one of {', '.join(FALLBACKS)}")


def _acd_info(decompositions: list[Decomposition], stats: ACDStats | None, params: ACDParams | None) -> dict:
    if stats is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "shapes": stats.total,
        "cached": stats.cached,
        "computed": stats.computed,
        "fallbacks": len(stats.fallbacks),
        "seconds": round(stats.seconds, 2),
        "mean_components": float(np.mean([len(d) for d in decompositions])) if decompositions else 0.0,
        "params": params.coacd_kwargs() if params is not None else {},
    }


def _part_seg_info(categories: list[str]) -> dict[str, Any]:
    return {
        "categories": list(categories),
        "parts_per_category": {i: list(SHAPENETPART_PARTS[c]) for i, c in enumerate(categories)},
        "num_parts": NUM_PARTS,
    }


def _stack(arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).to(dtype)


def _sample_rng(seed: int, split: str, category: str, index: int) -> np.random.Generator:
    """Point sampling of one procedural shape: a function of the shape's identity only, so a shape's
    points do not change with how many shapes per category are drawn."""
    return np.random.default_rng(
        procedural.shape_rng(seed, split, category, index).bit_generator.seed_seq.spawn(1)[0]
    )


def sample_part_mesh(
    mesh: PartMesh, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points, normals, parts)`` sampled from a labelled mesh, in the mesh's frame."""
    points, normals, face_index = sample_points(mesh.vertices, mesh.faces, num_points, rng, mesh.face_labels)
    return points.numpy(), normals.numpy(), mesh.face_labels[face_index.numpy()]


def acd_cache_dir(cache_dir: str | Path | None) -> Path:
    """Where the builders keep ACD results: ``<cache_dir>/acd``, or :func:`default_acd_cache_dir`."""
    return Path(cache_dir).expanduser() / "acd" if cache_dir is not None else default_acd_cache_dir()


def _acd_labels(
    jobs: list[ACDJob],
    points: list[np.ndarray],
    params: ACDParams,
    cache_dir: str | None,
    workers: int,
    timeout_s: float,
    fallback: str,
) -> tuple[list[np.ndarray], list[Decomposition], ACDStats]:
    cache = acd_cache_dir(cache_dir)
    decompositions, stats = decompose_many(
        jobs, params, cache_dir=cache, workers=workers, timeout_s=timeout_s, fallback=fallback
    )
    return [assign_points(p, d) for p, d in zip(points, decompositions)], decompositions, stats


# ----------------------------------------------------------------------------------- builders


@data_source(produces={POINTS, NORMALS, ACD_LABELS, INDEX})
def procedural_parts(
    categories: list[str] | None = None,
    train_per_category: int = 24,
    test_per_category: int = 16,
    num_points: int = 2048,
    seed: int = 0,
    acd: bool = True,
    acd_workers: int = 2,
    acd_timeout_s: float = 60.0,
    acd_fallback: str = "connected_components",
    acd_threshold: float = 0.05,
    acd_resolution: int = 1000,
    acd_preprocess_mode: str = "auto",
    acd_preprocess_resolution: int = 30,
    acd_mcts_iterations: int = 50,
    acd_mcts_nodes: int = 10,
    acd_split_pieces: bool = True,
    cache_dir: str | None = None,
) -> DataBundle:
    """Built-in part-annotated shapes (see :mod:`mmssl.modalities.pointcloud.procedural`); no download.

    ``categories``: ShapeNetPart names among Airplane, Chair, Guitar, Knife, Lamp, Laptop, Mug, Rocket,
    Table (default: Airplane, Chair, Lamp, Mug, Table). The ``train_per_category`` training shapes are
    both the pretraining set (with ACD labels, no part labels) and ``eval_train``; ``eval_test`` is a
    disjoint draw. ``num_points`` are sampled per shape, area-weighted, once (fixed per seed).

    ``acd``: decompose every training mesh with CoACD (``acd_*`` settings; see
    :class:`~mmssl.modalities.pointcloud.acd.ACDParams`) in ``acd_workers`` processes, each mesh
    limited to ``acd_timeout_s`` and then given the ``acd_fallback`` decomposition; results are cached
    under ``cache_dir/acd`` (default ``$MMSSL_CACHE/acd`` or ``~/.cache/mmssl/acd``), so only the first
    run pays. ``acd_split_pieces`` (default on): each connected piece of a mesh is decomposed on its
    own and a closed convex piece is one component without a CoACD call; the generator's pieces are
    mostly convex primitives, so only non-convex ones (mug handles) run CoACD, which keeps the first
    run to seconds; off: CoACD on every whole mesh (several seconds per mesh on 2 cores).
    ``acd=False``: pretraining items carry ``acd = -1``.
    """
    categories = list(categories) if categories is not None else list(DEFAULT_CATEGORIES)
    unknown = [c for c in categories if c not in PROCEDURAL_CATEGORIES]
    if unknown or not categories:
        raise DataError(
            f"procedural_parts categories {unknown} unknown; choose from {', '.join(PROCEDURAL_CATEGORIES)}"
        )
    if len(set(categories)) != len(categories):
        raise DataError(f"procedural_parts categories listed twice: {categories}")
    if train_per_category < 1 or test_per_category < 1 or num_points < 1:
        raise DataError("train_per_category, test_per_category and num_points must be >= 1")
    _check_fallback(acd_fallback)
    params = _acd_params(
        acd_threshold,
        acd_resolution,
        acd_preprocess_mode,
        acd_preprocess_resolution,
        acd_mcts_iterations,
        acd_mcts_nodes,
        split_pieces=acd_split_pieces,
    )

    splits: dict[str, PartSegDataset] = {}
    train_raw: list[np.ndarray] = []
    train_meshes: list[PartMesh] = []
    for split, per_category in (("train", train_per_category), ("test", test_per_category)):
        meshes = procedural_split(categories, per_category, split, seed)
        pts, nrm, parts = [], [], []
        for i, mesh in enumerate(meshes):
            rng = _sample_rng(seed, split, mesh.category, i % per_category)
            p, n, l = sample_part_mesh(mesh, num_points, rng)
            pts.append(p)
            nrm.append(n)
            parts.append(l)
        if split == "train":
            train_raw, train_meshes = pts, meshes
        splits[split] = PartSegDataset(
            _stack([normalize_unit_sphere(p) for p in pts], torch.float32),
            _stack(nrm, torch.float32),
            _stack(parts, torch.int64),
            [categories.index(m.category) for m in meshes],
        )

    train = splits["train"]
    decompositions: list[Decomposition] = []
    stats = None
    if acd:
        jobs = [
            ACDJob(f"procedural {m.category} #{i % train_per_category} (seed {seed})", m.vertices, m.faces)
            for i, m in enumerate(train_meshes)
        ]
        labels, decompositions, stats = _acd_labels(
            jobs, train_raw, params, cache_dir, acd_workers, acd_timeout_s, acd_fallback
        )
        acd_labels = _stack(labels, torch.int64)
    else:
        acd_labels = torch.full(train.parts.shape, -1, dtype=torch.int64)
    return DataBundle(
        pretrain=PointCloudPretrainDataset(train.points, train.normals, acd_labels),
        eval_train=train,
        eval_test=splits["test"],
        num_classes=len(categories),
        info={
            "modality": "pointcloud",
            "dataset": "procedural_parts",
            "class_names": categories,
            "num_points": num_points,
            "num_train": len(train),
            "num_test": len(splits["test"]),
            "part_seg": _part_seg_info(categories),
            "acd": _acd_info(decompositions, stats, params if acd else None),
        },
    )


@data_source(produces={POINTS, NORMALS, ACD_LABELS, INDEX})
def shapenetpart(
    root: str,
    num_points: int = 2048,
    categories: list[str] | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    acd: bool = True,
    acd_reconstruction: str = "ball_pivoting",
    acd_workers: int = 2,
    acd_timeout_s: float = 60.0,
    acd_fallback: str = "connected_components",
    acd_threshold: float = 0.2,
    acd_resolution: int = 1000,
    acd_preprocess_mode: str = "auto",
    acd_preprocess_resolution: int = 30,
    acd_mcts_iterations: int = 50,
    acd_mcts_nodes: int = 10,
    cache_dir: str | None = None,
) -> DataBundle:
    """A ShapeNetPart-layout ``root`` (see :mod:`mmssl.modalities.pointcloud.shapenetpart`).

    Pretraining and ``eval_train`` use the train+val lists, ``eval_test`` the test list; split-file
    inconsistencies are logged and counted in ``info["split_report"]``. ShapeNetPart has no meshes,
    so with ``acd`` each training shape's surface is first reconstructed from all its points and
    normals (``acd_reconstruction``: ball_pivoting or poisson; logged), then decomposed as in
    ``procedural_parts``, but with a coarser default ``acd_threshold`` (0.2): reconstructed surfaces
    are bumpy, and at 0.05 CoACD keeps cutting (over 45 s on a two-box cloud, then timed out) where
    0.2 takes seconds and still separates a table's top from its legs. ``skip_bad``: skip unreadable
    shape files with a warning instead of raising.
    """
    if acd_reconstruction not in RECONSTRUCTIONS:
        raise DataError(
            f"unknown acd_reconstruction '{acd_reconstruction}'; choose one of {', '.join(RECONSTRUCTIONS)}"
        )
    _check_fallback(acd_fallback)
    params = _acd_params(
        acd_threshold,
        acd_resolution,
        acd_preprocess_mode,
        acd_preprocess_resolution,
        acd_mcts_iterations,
        acd_mcts_nodes,
        acd_reconstruction,
    )
    common = dict(num_points=num_points, categories=categories, seed=seed, skip_bad=skip_bad)
    train = ShapeNetPart(root, "trainval", **common)  # type: ignore[arg-type]
    test = ShapeNetPart(root, "test", log_split_report=False, **common)  # type: ignore[arg-type]

    jobs, raw, pts, nrm, skipped = [], [], [], [], []
    for i, (path, _) in enumerate(train.samples):
        try:
            xyz_all, normals_all, _ = train.load_full(i)
            xyz, normals, _ = train.sample(i)
        except CorruptFileError as err:
            if not skip_bad:
                raise
            log.warning("skipping %s", err)
            skipped.append(str(path))
            continue
        jobs.append(ACDJob(str(path), xyz_all, None, normals_all))
        raw.append(xyz)
        pts.append(normalize_unit_sphere(xyz))
        nrm.append(normals)
    if not pts:
        raise DataError(f"no readable ShapeNetPart training shape under {root}")
    decompositions: list[Decomposition] = []
    stats = None
    if acd:
        log.info(
            "shapenetpart: no meshes in %s; reconstructing each shape's surface by %s before ACD (%d shapes)",
            root,
            acd_reconstruction.replace("_", " "),
            len(jobs),
        )
        labels, decompositions, stats = _acd_labels(
            jobs, raw, params, cache_dir, acd_workers, acd_timeout_s, acd_fallback
        )
        acd_labels = _stack(labels, torch.int64)
    else:
        acd_labels = torch.full((len(pts), num_points), -1, dtype=torch.int64)
    return DataBundle(
        pretrain=PointCloudPretrainDataset(
            _stack(pts, torch.float32), _stack(nrm, torch.float32), acd_labels
        ),
        eval_train=_ShapeNetPartItems(train),
        eval_test=_ShapeNetPartItems(test),
        num_classes=len(train.categories),
        info={
            "modality": "pointcloud",
            "dataset": "shapenetpart",
            "root": str(train.root),
            "class_names": train.categories,
            "num_points": num_points,
            "num_train": len(train),
            "num_test": len(test),
            "skipped_files": skipped,
            "split_report": train.report.counts(),
            "part_seg": _part_seg_info(train.categories),
            "acd": _acd_info(decompositions, stats, params if acd else None),
        },
    )


@data_source(produces={POINTS, NORMALS, ACD_LABELS, INDEX})
def mesh_folder(
    root: str,
    num_points: int = 2048,
    seed: int = 0,
    extensions: list[str] | None = None,
    skip_bad: bool = False,
    acd: bool = True,
    acd_workers: int = 2,
    acd_timeout_s: float = 60.0,
    acd_fallback: str = "connected_components",
    acd_threshold: float = 0.05,
    acd_resolution: int = 1000,
    acd_preprocess_mode: str = "auto",
    acd_preprocess_resolution: int = 30,
    acd_mcts_iterations: int = 50,
    acd_mcts_nodes: int = 10,
    acd_split_pieces: bool = True,
    cache_dir: str | None = None,
) -> DataBundle:
    """Every mesh under ``root`` (recursively; ``extensions`` default .obj .off .ply .stl) as unlabelled
    pretraining data with ACD labels (options as in ``procedural_parts``); no evaluation sets. A file that
    cannot be read raises :class:`~mmssl.errors.CorruptFileError`, or with ``skip_bad`` is skipped with
    a warning and listed in ``info["skipped_files"]``.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"mesh_folder root not found: {base}")
    _check_fallback(acd_fallback)
    params = _acd_params(
        acd_threshold,
        acd_resolution,
        acd_preprocess_mode,
        acd_preprocess_resolution,
        acd_mcts_iterations,
        acd_mcts_nodes,
        split_pieces=acd_split_pieces,
    )
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in (extensions or MESH_EXTENSIONS))
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise DataError(f"no meshes with extensions {', '.join(exts)} under {base}")
    jobs, raw, pts, nrm, skipped = [], [], [], [], []
    for i, path in enumerate(files):
        try:
            vertices, faces = read_mesh(path)
            p, n, _ = sample_points(vertices, faces, num_points, np.random.default_rng([int(seed), i]))
        except ValueError as err:  # CorruptFileError, or a mesh with zero area
            bad = err if isinstance(err, CorruptFileError) else CorruptFileError(path, str(err))
            if not skip_bad:
                raise bad from err
            log.warning("skipping %s", bad)
            skipped.append(str(path))
            continue
        jobs.append(ACDJob(str(path), vertices.numpy(), faces.numpy()))
        raw.append(p.numpy())
        pts.append(normalize_unit_sphere(p.numpy()))
        nrm.append(n.numpy())
    if not pts:
        raise DataError(f"no readable mesh under {base}: all {len(files)} files failed")
    decompositions: list[Decomposition] = []
    stats = None
    if acd:
        labels, decompositions, stats = _acd_labels(
            jobs, raw, params, cache_dir, acd_workers, acd_timeout_s, acd_fallback
        )
        acd_labels = _stack(labels, torch.int64)
    else:
        acd_labels = torch.full((len(pts), num_points), -1, dtype=torch.int64)
    return DataBundle(
        pretrain=PointCloudPretrainDataset(
            _stack(pts, torch.float32), _stack(nrm, torch.float32), acd_labels
        ),
        info={
            "modality": "pointcloud",
            "dataset": "mesh_folder",
            "root": str(base),
            "files": [j.name for j in jobs],
            "skipped_files": skipped,
            "num_points": num_points,
            "acd": _acd_info(decompositions, stats, params if acd else None),
        },
    )
