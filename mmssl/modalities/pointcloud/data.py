"""The registered point-cloud dataset builders: ``procedural_parts``, ``shapenetpart``, ``mesh_folder``,
``point_folder``.

Each returns a :class:`~mmssl.data.DataBundle` whose pretraining items carry ACD labels (Gadelha et al.,
ECCV 2020; items in :mod:`mmssl.modalities.pointcloud.datasets`), configured by the recipe's ``acd:``
section (:mod:`mmssl.modalities.pointcloud.acd.options`). The part-annotated sets also give
``eval_train`` / ``eval_test`` part-segmentation splits and their
:class:`~mmssl.modalities.pointcloud.taxonomy.PartTaxonomy` in ``extras``. ``stats`` report how the data
was read: shape counts, files skipped, split-file inconsistencies (``split_<kind>``), and how the ACD
labels were obtained (``acd_cached``, ``acd_computed``, ``acd_fallbacks`` ...).

Every builder also takes ``views`` (``null``, or ``two_view``: items gain ``"views"``, two random views of
the shape, for SimCLR / MoCo / BYOL) and ``view_options``
(:class:`~mmssl.modalities.pointcloud.views.PointViewOptions`). ``procedural_parts`` takes ``eval_on``
(:class:`~mmssl.modalities.pointcloud.partseg_sets.ShapeNetPartEval`): pretrain on the built-in shapes,
score part segmentation on a ShapeNetPart-layout folder; ``shapenetpart`` takes ``support_split`` /
``score_split`` (:mod:`mmssl.modalities.pointcloud.partseg_sets`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmssl.data import DataBundle
from mmssl.data.keys import INDEX, VIEWS
from mmssl.data.shards import ShardStream
from mmssl.data.skip import SkipBadFiles
from mmssl.data.source import data_source
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.pointcloud import procedural
from mmssl.modalities.pointcloud.acd.job import ACDJob
from mmssl.modalities.pointcloud.acd.options import (
    MESH_ACD_DEFAULTS,
    POINT_CLOUD_ACD_DEFAULTS,
    ACDOptions,
    MeshACDOptions,
    PointCloudACDOptions,
)
from mmssl.modalities.pointcloud.acd_labels import acd_labels
from mmssl.modalities.pointcloud.datasets import (
    PartSegDataset,
    PointCloudPretrainDataset,
    PointCloudViewsDataset,
    ShapeItems,
    stack,
)
from mmssl.modalities.pointcloud.io import (
    MESH_EXTENSIONS,
    POINT_EXTENSIONS,
    normalize_unit_sphere,
    read_and_sample_mesh,
    read_point_file,
    sample_point_cloud,
    sample_points,
)
from mmssl.modalities.pointcloud.keys import ACD_LABELS, NORMALS, POINTS
from mmssl.modalities.pointcloud.partseg_sets import ShapeNetPartEval, check_eval_splits, shapenetpart_splits
from mmssl.modalities.pointcloud.procedural import (
    DEFAULT_CATEGORIES,
    PROCEDURAL_CATEGORIES,
    PartMesh,
    procedural_split,
)
from mmssl.modalities.pointcloud.shapenetpart import ShapeNetPart
from mmssl.modalities.pointcloud.shards import ACD_MEMBER, BUILDERS, shape_shard_samples
from mmssl.modalities.pointcloud.taxonomy import shapenetpart_taxonomy
from mmssl.modalities.pointcloud.views import VIEW_NAMES, PointViewOptions, two_view_transform

log = logging.getLogger(__name__)

PRODUCES = {POINTS, NORMALS, ACD_LABELS, INDEX}


def _check_views(views: str | None) -> str | None:
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in VIEW_NAMES:
        raise ConfigError(
            f"unknown data.views '{views}' for point clouds; choose one of {', '.join(VIEW_NAMES)} or null"
        )
    return views


def produced_keys(options: Mapping[str, Any]) -> set[str]:
    """The pretraining items' keys: points, normals, ACD labels, index; ``views`` too with two_view."""
    return PRODUCES | ({VIEWS} if _check_views(options.get("views")) else set())


def with_views(
    pretrain: PointCloudPretrainDataset | ShapeItems, views: str | None, view_options: PointViewOptions | None
) -> PointCloudPretrainDataset | ShapeItems | PointCloudViewsDataset:
    """``pretrain`` with two random views per item when ``views`` is ``two_view``."""
    if _check_views(views) is None:
        if view_options is not None:
            raise ConfigError("data.view_options needs data.views (two_view)")
        return pretrain
    return PointCloudViewsDataset(pretrain, two_view_transform(view_options))


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


@dataclass
class _PretrainShapes:
    """The pretraining shapes a builder has read: one ACD job each, its sampled points in the shape's frame
    (what the labels are assigned from), and those points normalised with their normals."""

    jobs: list[ACDJob] = field(default_factory=list)
    raw: list[np.ndarray] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    normals: list[np.ndarray] = field(default_factory=list)

    def add(self, job: ACDJob, points: np.ndarray, normals: np.ndarray) -> None:
        self.jobs.append(job)
        self.raw.append(points)
        self.points.append(normalize_unit_sphere(points))
        self.normals.append(normals)

    def dataset(
        self, acd: ACDOptions, cache_dir: str | None, num_points: int
    ) -> tuple[PointCloudPretrainDataset, dict[str, Any]]:
        """The pretraining set with ACD labels, and the ACD stats."""
        labels, stats = acd_labels(self.jobs, self.raw, acd, cache_dir, num_points)
        points, normals = stack(self.points, torch.float32), stack(self.normals, torch.float32)
        return PointCloudPretrainDataset(points, normals, labels), stats


@data_source(produces=produced_keys)
def procedural_parts(
    categories: list[str] | None = None,
    train_per_category: int = 24,
    test_per_category: int = 16,
    num_points: int = 2048,
    seed: int = 0,
    acd: MeshACDOptions = MESH_ACD_DEFAULTS,
    cache_dir: str | None = None,
    views: str | None = None,
    view_options: PointViewOptions | None = None,
    eval_on: ShapeNetPartEval | None = None,
) -> DataBundle:
    """Built-in part-annotated shapes (see :mod:`mmssl.modalities.pointcloud.procedural`); no download.

    ``categories``: ShapeNetPart names among Airplane, Chair, Guitar, Knife, Lamp, Laptop, Mug, Rocket,
    Table (default: Airplane, Chair, Lamp, Mug, Table). The ``train_per_category`` training shapes are
    both the pretraining set (with ACD labels, no part labels) and ``eval_train``; ``eval_test`` is a
    disjoint draw. ``num_points`` are sampled per shape, area-weighted, once (fixed per seed).

    ``acd`` (:class:`~mmssl.modalities.pointcloud.acd.options.MeshACDOptions`): decompose every training
    mesh with CoACD in ``acd.workers`` processes, each mesh limited to ``acd.timeout_s`` and then given
    the ``acd.fallback`` decomposition; results are cached under ``cache_dir/acd`` (default
    ``$MMSSL_CACHE/acd`` or ``~/.cache/mmssl/acd``), so only the first run pays. ``acd.split_pieces``
    (default on): each connected piece of a mesh is decomposed on its own and a closed convex piece is
    one component without a CoACD call; the generator's pieces are mostly convex primitives, so only
    non-convex ones (mug handles) run CoACD, which keeps the first run to seconds; off: CoACD on every
    whole mesh (several seconds per mesh on 2 cores). ``acd.enabled=false``: pretraining items carry
    ``acd = -1``.

    ``views: two_view`` (+ ``view_options``): items also carry two random views (two-view methods).
    ``eval_on`` (:class:`~mmssl.modalities.pointcloud.partseg_sets.ShapeNetPartEval`): ``eval_train`` /
    ``eval_test`` / the taxonomy come from that ShapeNetPart-layout folder's ``support_split`` /
    ``score_split`` instead of the built-in shapes (which are then pretraining data only).
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
            stack([normalize_unit_sphere(p) for p in pts], torch.float32),
            stack(nrm, torch.float32),
            stack(parts, torch.int64),
            [categories.index(m.category) for m in meshes],
        )

    train, test = splits["train"], splits["test"]
    jobs = [
        ACDJob(f"procedural {m.category} #{i % train_per_category} (seed {seed})", m.vertices, m.faces)
        for i, m in enumerate(train_meshes)
    ]
    labels, acd_stats = acd_labels(jobs, train_raw, acd, cache_dir, num_points)
    pretrain = with_views(PointCloudPretrainDataset(train.points, train.normals, labels), views, view_options)
    if eval_on is None:
        eval_train, eval_test, taxonomy = train, test, shapenetpart_taxonomy(categories)
        stats = {"num_points": num_points, "num_train": len(train), "num_test": len(test), **acd_stats}
    else:  # the built-in shapes are pretraining data only; the evaluation splits come from the folder
        real = shapenetpart_splits(eval_on, seed)
        eval_train, eval_test, taxonomy = real.eval_train, real.eval_test, real.taxonomy
        stats = {"num_points": num_points, "num_pretrain": len(train), **acd_stats, **real.stats}
    return DataBundle(
        pretrain=pretrain,
        eval_train=eval_train,
        eval_test=eval_test,
        num_classes=len(taxonomy.categories),
        extras=(taxonomy,),
        stats=stats,
        name="procedural_parts",
    )


@data_source(produces=produced_keys)
def shapenetpart(
    root: str,
    num_points: int = 2048,
    categories: list[str] | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    acd: PointCloudACDOptions = POINT_CLOUD_ACD_DEFAULTS,
    cache_dir: str | None = None,
    views: str | None = None,
    view_options: PointViewOptions | None = None,
    support_split: str = "trainval",
    score_split: str = "test",
) -> DataBundle:
    """A ShapeNetPart-layout ``root`` (see :mod:`mmssl.modalities.pointcloud.shapenetpart`).

    Pretraining uses the train+val lists (without their labels); ``eval_train`` (the few-shot support
    pool) the ``support_split`` (``trainval``, or ``train``: e.g. the 10-shot pool of
    ``shapenetpart_points``) and ``eval_test`` the ``score_split`` (``test``, or ``val`` to tune; not
    ``val`` with ``trainval``, see :mod:`mmssl.modalities.pointcloud.partseg_sets`); split-file
    inconsistencies are logged and counted in ``stats`` (``split_missing``, ``split_duplicates``,
    ``split_in_several_splits``, ``split_unlisted``). ShapeNetPart has no meshes, so with ACD each
    training shape's surface is first reconstructed from all its points and normals
    (``acd.reconstruction``: ball_pivoting or poisson; logged), then decomposed as in
    ``procedural_parts``, but with a coarser default ``acd.threshold`` (0.2; see
    :class:`~mmssl.modalities.pointcloud.acd.options.PointCloudACDOptions`). ``skip_bad``: every shape
    file is read once when the splits are opened; unreadable ones are logged, left out (never replaced by
    another shape) and listed in ``stats["bad_files"]`` (``num_skipped``; ``skipped_files`` counts the
    training ones), instead of raising.
    ``views: two_view`` (+ ``view_options``): items also carry two random views (two-view methods).
    """
    try:
        check_eval_splits(support_split, score_split)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    common = dict(num_points=num_points, categories=categories, seed=seed, skip_bad=skip_bad)
    train = ShapeNetPart(root, "trainval", **common)  # type: ignore[arg-type]

    shapes = _PretrainShapes()

    def full_and_sample(i: int) -> tuple:
        full = train.load_full(i)
        return full, train.sample(i, full)

    readable = train.skip.keep_readable(range(len(train)), lambda i: train.samples[i][0], full_and_sample)
    for i, ((xyz_all, normals_all, _), (xyz, normals, _)) in readable:
        shapes.add(ACDJob(str(train.samples[i][0]), xyz_all, None, normals_all), xyz, normals)
    if not shapes.jobs:
        raise DataError(f"no readable ShapeNetPart training shape under {root}")
    if acd.enabled:
        log.info(
            "shapenetpart: no meshes in %s; reconstructing each shape's surface by %s before ACD (%d shapes)",
            root,
            acd.reconstruction.replace("_", " "),
            len(shapes.jobs),
        )
    pretrain, acd_stats = shapes.dataset(acd, cache_dir, num_points)
    splits = shapenetpart_splits(
        ShapeNetPartEval(root, num_points, categories, support_split, score_split, skip_bad),
        seed,
        support=train if support_split == "trainval" else None,
    )
    split_stats = {k: v for k, v in splits.stats.items() if k.startswith("split_")}
    bad = list(dict.fromkeys([str(p) for p in train.bad_files] + splits.stats["bad_files"]))
    return DataBundle(
        pretrain=with_views(pretrain, views, view_options),
        eval_train=splits.eval_train,
        eval_test=splits.eval_test,
        num_classes=len(train.categories),
        extras=(splits.taxonomy,),
        stats={
            "root": str(train.root),
            "num_points": num_points,
            "num_train": len(splits.eval_train),
            "num_test": len(splits.eval_test),
            "support_split": support_split,
            "score_split": score_split,
            "skipped_files": train.skip.num_skipped,
            "num_skipped": len(bad),  # every split's unreadable files, each once
            "bad_files": bad,
            **split_stats,
            **acd_stats,
        },
        name="shapenetpart",
    )


def _root_or_shards(name: str, what: str, modality: str, options: Mapping[str, Any]) -> None:
    root, shards = options.get("root"), options.get("shards")
    if (root is None) == (shards is None):
        got = f"root: {root}, shards: {shards}" if root is not None else "neither"
        raise ConfigError(
            f"dataset '{name}' takes data.root (a folder of {what}) or data.shards ({what} shards written "
            f"by data_tools/make_shards.py {modality}), exactly one; got {got}"
        )


def mesh_folder_keys(options: Mapping[str, Any]) -> set[str]:
    """As :func:`produced_keys`; also checks, when the recipe loads, that exactly one of ``root`` and
    ``shards`` says where the meshes are."""
    _root_or_shards("mesh_folder", "meshes", "mesh", options)
    return produced_keys(options)


def point_folder_keys(options: Mapping[str, Any]) -> set[str]:
    """:func:`mesh_folder_keys` for ``point_folder``."""
    _root_or_shards("point_folder", "point clouds", "points", options)
    return produced_keys(options)


def has_eval_on(options: Mapping[str, Any]) -> bool:
    """The ``labelled`` of the folder builders: part-segmentation splits exist only with ``eval_on``."""
    return options.get("eval_on") is not None


def _files_under(name: str, root: str, extensions: list[str] | None, default: tuple[str, ...]) -> list[Path]:
    """Every file under ``root`` (recursively) with one of ``extensions`` (default ``default``)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"{name} root not found: {base}")
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in (extensions or default))
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise DataError(f"{name}: no files with extensions {', '.join(exts)} under {base}")
    return files


def _eval_sets(eval_on: ShapeNetPartEval | None, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A folder builder's evaluation sets: none, or (``eval_on``) the part-segmentation splits of that
    ShapeNetPart-layout folder, as ``procedural_parts`` takes them; ``(bundle fields, stats)``. The
    splits' unreadable files are listed apart (``eval_bad_files``) from the pretraining folder's."""
    if eval_on is None:
        return {}, {}
    real = shapenetpart_splits(eval_on, seed)
    stats = {k: v for k, v in real.stats.items() if k not in ("num_skipped", "bad_files")}
    stats["eval_bad_files"] = real.stats["bad_files"]
    fields = {
        "eval_train": real.eval_train,
        "eval_test": real.eval_test,
        "num_classes": len(real.taxonomy.categories),
        "extras": (real.taxonomy,),
    }
    return fields, stats


def _folder_bundle(
    name: str,
    root: str,
    shapes: _PretrainShapes,
    skip: SkipBadFiles,
    num_files: int,
    acd: ACDOptions,
    cache_dir: str | None,
    num_points: int,
    views: str | None,
    view_options: PointViewOptions | None,
    eval_on: ShapeNetPartEval | None,
    seed: int,
) -> DataBundle:
    """The bundle of a folder builder once its files are read into ``shapes``."""
    if not shapes.jobs:
        raise DataError(f"{name}: no readable file under {root}: all {num_files} files failed")
    pretrain, acd_stats = shapes.dataset(acd, cache_dir, num_points)
    eval_fields, eval_stats = _eval_sets(eval_on, seed)
    return DataBundle(
        pretrain=with_views(pretrain, views, view_options),
        stats={
            "root": str(Path(root).expanduser()),
            "num_points": num_points,
            "num_shapes": len(shapes.jobs),
            "skipped_files": skip.num_skipped,
            "num_skipped": skip.num_skipped,
            "bad_files": [str(p) for p in skip.bad_files],
            **acd_stats,
            **eval_stats,
        },
        name=name,
        **eval_fields,
    )


@data_source(produces=mesh_folder_keys, labelled=has_eval_on)
def mesh_folder(
    root: str | None = None,
    num_points: int = 2048,
    seed: int = 0,
    extensions: list[str] | None = None,
    skip_bad: bool = False,
    acd: MeshACDOptions = MESH_ACD_DEFAULTS,
    cache_dir: str | None = None,
    views: str | None = None,
    view_options: PointViewOptions | None = None,
    shards: str | None = None,
    shuffle_buffer: int = 1000,
    eval_on: ShapeNetPartEval | None = None,
) -> DataBundle:
    """Every mesh under ``root`` (recursively; ``extensions`` default .obj .off .ply .stl) as unlabelled
    pretraining data with ACD labels (``acd`` as in ``procedural_parts``); evaluation sets only with
    ``eval_on``. A file that cannot be read raises :class:`~mmssl.errors.CorruptFileError`, or with
    ``skip_bad`` is skipped with a warning and counted in ``stats["skipped_files"]``. ``views: two_view``
    (+ ``view_options``): items also carry two random views (two-view methods).

    ``shards`` (instead of ``root``): mesh shards written by ``data_tools/make_shards.py mesh``, streamed
    (:class:`~mmssl.data.shards.ShardStream`: split over processes and data-loader workers, block shuffle
    of ``shuffle_buffer`` shapes, exact resume) and decoded from memory
    (:mod:`~mmssl.modalities.pointcloud.shards`). With ``acd.enabled`` the labels come from each record's
    ``acd.npz`` (``make_shards.py mesh --acd-cache``), computed with the default ACD settings: a set
    without them, or an ``acd`` section that changes those settings, is refused here; with
    ``acd.enabled=false`` (Point-MAE, two-view methods) only the meshes are read.

    ``eval_on`` (:class:`~mmssl.modalities.pointcloud.partseg_sets.ShapeNetPartEval`, as in
    ``procedural_parts``): ``eval_train`` / ``eval_test`` / the taxonomy from that ShapeNetPart-layout
    folder, so the recipe's part-segmentation evaluation scores the encoder pretrained on these shapes.
    """
    mesh_folder_keys({"root": root, "shards": shards, "views": views})  # also when called from Python
    if shards is not None:
        return _streamed_shapes(
            "mesh", shards, num_points, seed, acd, views, view_options, shuffle_buffer, eval_on
        )
    files = _files_under("mesh_folder", root, extensions, MESH_EXTENSIONS)  # type: ignore[arg-type]
    skip = SkipBadFiles(skip_bad)
    readable = skip.keep_readable(
        enumerate(files),
        lambda item: item[1],
        lambda item: read_and_sample_mesh(item[1], num_points, np.random.default_rng([int(seed), item[0]])),
    )
    shapes = _PretrainShapes()
    for (_, path), (vertices, faces, points, normals) in readable:
        shapes.add(ACDJob(str(path), vertices.numpy(), faces.numpy()), points.numpy(), normals.numpy())
    return _folder_bundle(
        "mesh_folder",
        str(root),
        shapes,
        skip,
        len(files),
        acd,
        cache_dir,
        num_points,
        views,
        view_options,
        eval_on,
        seed,
    )


@data_source(produces=point_folder_keys, labelled=has_eval_on)
def point_folder(
    root: str | None = None,
    num_points: int = 2048,
    seed: int = 0,
    extensions: list[str] | None = None,
    skip_bad: bool = False,
    acd: PointCloudACDOptions = POINT_CLOUD_ACD_DEFAULTS,
    cache_dir: str | None = None,
    views: str | None = None,
    view_options: PointViewOptions | None = None,
    shards: str | None = None,
    shuffle_buffer: int = 1000,
    eval_on: ShapeNetPartEval | None = None,
) -> DataBundle:
    """Every point cloud under ``root`` (recursively; ``extensions`` default .ply .pcd .xyz .xyzn .xyzrgb
    .pts .txt, read by :func:`~mmssl.modalities.pointcloud.io.read_points`: xyz, with normals when the
    file has them) as unlabelled pretraining data; evaluation sets only with ``eval_on``. ``num_points`` of
    each cloud's points are drawn once (without replacement when it has enough, seeded by ``seed`` and the
    file's place in the sorted list); a cloud without normals gets them estimated from all its points (16
    neighbours, oriented consistently).

    ACD labels as ``shapenetpart`` makes them (no meshes): each cloud's surface is reconstructed from all
    its points (``acd.reconstruction``), then decomposed and cached
    (:class:`~mmssl.modalities.pointcloud.acd.options.PointCloudACDOptions`). Bad files, ``views``,
    ``shards`` and ``shuffle_buffer`` as in ``mesh_folder``: point-cloud shards are written by
    ``data_tools/make_shards.py points`` (``--acd-cache DIR``: each record carries the decomposition a
    ``point_folder`` run on the same folder cached, default ACD settings). ``eval_on`` as in
    ``mesh_folder``: part segmentation scored on a ShapeNetPart-layout folder.
    """
    point_folder_keys({"root": root, "shards": shards, "views": views})  # also when called from Python
    if shards is not None:
        return _streamed_shapes(
            "points", shards, num_points, seed, acd, views, view_options, shuffle_buffer, eval_on
        )
    files = _files_under("point_folder", root, extensions, POINT_EXTENSIONS)  # type: ignore[arg-type]
    skip = SkipBadFiles(skip_bad)

    def read_and_sample(item: tuple[int, Path]) -> tuple:
        xyz, normals = read_point_file(item[1])
        rng = np.random.default_rng([int(seed), item[0]])
        return xyz, normals, sample_point_cloud(xyz, normals, num_points, rng)

    shapes = _PretrainShapes()
    for (_, path), (xyz, normals, (points, point_normals)) in skip.keep_readable(
        enumerate(files), lambda item: item[1], read_and_sample
    ):
        shapes.add(ACDJob(str(path), xyz, None, normals), points, point_normals)
    if acd.enabled and shapes.jobs:
        log.info(
            "point_folder: reconstructing each cloud's surface by %s before ACD (%d clouds)",
            acd.reconstruction.replace("_", " "),
            len(shapes.jobs),
        )
    return _folder_bundle(
        "point_folder",
        str(root),
        shapes,
        skip,
        len(files),
        acd,
        cache_dir,
        num_points,
        views,
        view_options,
        eval_on,
        seed,
    )


def check_shard_acd_settings(acd: ACDOptions, modality: str = "mesh") -> None:
    """:class:`~mmssl.errors.ConfigError` when ``acd`` asks for other decomposition settings than the
    defaults the shards' ``acd.npz`` members were computed with (``make_shards.py mesh|points
    --acd-cache`` copies the cache entries of those): the labels would silently be another
    decomposition's."""
    defaults = MESH_ACD_DEFAULTS if modality == "mesh" else POINT_CLOUD_ACD_DEFAULTS
    wanted, written = acd.params(), defaults.params()
    changed = {k: v for k, v in dataclasses.asdict(wanted).items() if getattr(written, k) != v}
    if changed:
        shown = ", ".join(f"data.acd.{k}={v}" for k, v in changed.items())
        what = "mesh" if modality == "mesh" else "point-cloud"
        raise ConfigError(
            f"{shown}: {what} shards carry decompositions made with the default ACD settings (make_shards.py "
            f"{modality} --acd-cache), so with data.shards the acd section may only set enabled, workers, "
            "timeout_s and fallback; other settings need the files read from data.root (decomposed there)"
        )


def _streamed_shapes(
    modality: str,
    shards: str,
    num_points: int,
    seed: int,
    acd: ACDOptions,
    views: str | None,
    view_options: PointViewOptions | None,
    shuffle_buffer: int,
    eval_on: ShapeNetPartEval | None,
) -> DataBundle:
    """``mesh_folder`` / ``point_folder`` over a shard set: shapes decoded as they stream, ACD labels from
    the records."""
    if acd.enabled:
        check_shard_acd_settings(acd, modality)
    samples = shape_shard_samples(shards, modality, num_points, seed, with_acd=acd.enabled)
    items = with_views(ShapeItems(samples), views, view_options)
    eval_fields, eval_stats = _eval_sets(eval_on, seed)
    return DataBundle(
        pretrain=ShardStream(items, samples, seed=seed, shuffle_buffer=shuffle_buffer),
        stats={
            "shards": str(samples.manifest.root),
            "num_shards": len(samples.manifest.shards),
            "num_train": len(samples),
            "num_points": num_points,
            "num_shapes": len(samples),
            "num_skipped": 0,
            "bad_files": [],
            "acd_enabled": acd.enabled,
            "acd_source": f"shard members ({ACD_MEMBER})" if acd.enabled else None,
            **eval_stats,
        },
        name=BUILDERS[modality],
        **eval_fields,
    )
