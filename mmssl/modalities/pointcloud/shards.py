"""Mesh and point-cloud shards: records with one mesh member (``obj``, ``off``, ``ply``, ``stl``) or one
point-cloud member (``ply``, ``pcd``, ``xyz`` ... ``txt``) and, for the ACD pretext, its convex
decomposition (``acd.npz``), decoded from memory into a pretraining shape.

Point clouds (``data_tools/make_shards.py points``, streamed by ``point_folder``'s ``shards`` option)
decode as ``point_folder`` reads a file: ``num_points`` of the cloud's points drawn with the record's
generator (normals from the file, else estimated), the ``acd.npz`` being the decomposition of the
cloud's reconstructed surface (point-cloud ACD defaults). The rest of this docstring is written for
meshes and holds for both.

Written by ``data_tools/make_shards.py mesh`` (every mesh read once by :func:`~.io.read_mesh` before it is
written; with ``--acd-cache DIR`` each record also carries that cache's entry for the mesh, computed with
the default ACD settings) and streamed through :class:`~mmssl.data.shards.ShardStream` by ``mesh_folder``'s
``shards`` option. A record decodes to the item ``mesh_folder`` makes for a file: ``num_points`` sampled
over the surface (area-weighted, with a generator seeded by the run's seed and the record's key, so a
shape's points are the same every epoch, as a folder's are fixed when it is read), normalised into the
unit sphere, with their normals and ACD labels.

ACD labels: a folder's are computed for all shapes up front (:func:`~.acd_labels.acd_labels`: cache, then
CoACD); a stream cannot do that, so they come from the record's ``acd.npz``, read with the ACD cache's own
loader (:func:`~.acd.cache.read_decomposition`: CRC-checked, arrays checked to describe hulls) and
assigned to the sampled points as for a folder (:func:`~.acd.assign.assign_points`). Without ACD
(``with_acd`` false: Point-MAE, two-view methods) the member is not read and every label is -1.
"""

from __future__ import annotations

import functools
import io
import zlib

import numpy as np
import torch

from mmssl.cache import NPZ_ERRORS
from mmssl.data.shards import Record, ShardManifest, ShardSamples, iter_records, only_member, read_manifest
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.pointcloud.acd.assign import assign_points
from mmssl.modalities.pointcloud.acd.cache import read_decomposition
from mmssl.modalities.pointcloud.acd.job import Decomposition
from mmssl.modalities.pointcloud.io import (
    MESH_EXTENSIONS,
    POINT_EXTENSIONS,
    normalize_unit_sphere,
    read_and_sample_mesh,
    read_point_file,
    sample_point_cloud,
)
from mmssl.modalities.pointcloud.keys import ACD_LABELS, NORMALS, POINTS

MESH_FIELDS: tuple[str, ...] = tuple(ext.lstrip(".") for ext in MESH_EXTENSIONS)
POINT_FIELDS: tuple[str, ...] = tuple(ext.lstrip(".") for ext in POINT_EXTENSIONS)
#: the member ``make_shards.py mesh --acd-cache`` writes: the ACD cache entry of the record's mesh
ACD_MEMBER = "acd.npz"
#: how make_shards.py --acd-cache is asked for it, for the error messages
_ACD_HINT = (
    "write the shards with `data_tools/make_shards.py {modality} SOURCE OUT --acd-cache DIR`, DIR being the "
    "ACD cache that a {builder} run on SOURCE filled (<data.cache_dir>/acd, by default ~/.cache/mmssl/acd; "
    "default ACD settings), or set data.acd.enabled=false for objectives without ACD labels (point_mae, "
    "two-view methods)"
)
#: the builder that reads each modality's shards (and fills the ACD cache their acd.npz members copy)
BUILDERS = {"mesh": "mesh_folder", "points": "point_folder"}


def _acd_hint(modality: str) -> str:
    return _ACD_HINT.format(modality=modality, builder=BUILDERS[modality])


def shape_rng(seed: int, key: str) -> np.random.Generator:
    """The point-sampling generator of the record with ``key``: a function of the run's seed and the key
    only, so a streamed shape's points do not change between epochs, workers or resumed runs."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def record_decomposition(record: Record, where: str, modality: str = "mesh") -> Decomposition:
    """The record's ``acd.npz`` member as a decomposition; :class:`CorruptFileError` naming the record when
    it has none or when it is damaged (read as the ACD cache reads its entries)."""
    if ACD_MEMBER not in record:
        raise CorruptFileError(where, f"no {ACD_MEMBER} member (ACD labels need one): {_acd_hint(modality)}")
    try:
        return read_decomposition(io.BytesIO(record[ACD_MEMBER]))
    except NPZ_ERRORS as err:
        raise CorruptFileError(f"{where}.{ACD_MEMBER}", f"{type(err).__name__}: {err}") from err


def decode_mesh_record(
    record: Record, where: str, num_points: int, seed: int, with_acd: bool
) -> dict[str, torch.Tensor]:
    """``{"points", "normals", "acd"}`` of the record's mesh (the module docstring): float32 ``[N, 3]``
    points in the unit sphere and their normals, int64 ``[N]`` ACD labels (-1 without ``with_acd``).
    Errors name ``<shard>:<key>.<member>`` (the tar member)."""
    member = only_member(record, MESH_FIELDS, "mesh", where)
    rng = shape_rng(seed, record["__key__"])
    _, _, points, normals = read_and_sample_mesh(f"{where}.{member}", num_points, rng, data=record[member])
    return _shape_item(record, where, "mesh", points.numpy(), normals.numpy(), with_acd)


def decode_point_record(
    record: Record, where: str, num_points: int, seed: int, with_acd: bool
) -> dict[str, torch.Tensor]:
    """:func:`decode_mesh_record` for a point-cloud record: ``num_points`` of its points (drawn with the
    record's generator, :func:`~.io.sample_point_cloud`) and their normals (the file's, else estimated)."""
    member = only_member(record, POINT_FIELDS, "point-cloud", where)
    xyz, normals = read_point_file(f"{where}.{member}", data=record[member])
    points, normals = sample_point_cloud(xyz, normals, num_points, shape_rng(seed, record["__key__"]))
    return _shape_item(record, where, "points", points, normals, with_acd)


def _shape_item(
    record: Record, where: str, modality: str, points: np.ndarray, normals: np.ndarray, with_acd: bool
) -> dict[str, torch.Tensor]:
    """The pretraining item of sampled ``points`` (in the shape's frame) and their normals."""
    if with_acd:  # labels are assigned in the shape's frame, before normalising
        labels = assign_points(points, record_decomposition(record, where, modality))
    else:
        labels = np.full(len(points), -1, dtype=np.int64)
    return {
        POINTS: torch.from_numpy(np.ascontiguousarray(normalize_unit_sphere(points), dtype=np.float32)),
        NORMALS: torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32)),
        ACD_LABELS: torch.from_numpy(labels),
    }


def check_acd_members(manifest: ShardManifest) -> None:
    """:class:`~mmssl.errors.DataError` when the set cannot give ACD labels: ``shards.json`` lists no
    ``acd.npz`` field, or its first record has none (make_shards.py writes it only for shapes the cache
    held). A later record without one fails when it is read, naming it."""
    hint = _acd_hint(manifest.modality)
    if ACD_MEMBER not in manifest.fields:
        raise DataError(
            f"{manifest.root}: ACD labels (data.acd.enabled) need an {ACD_MEMBER} member in every record; "
            f"shards.json lists the fields {manifest.fields}: {hint}"
        )
    first = manifest.shards[0]
    record = next(iter_records(manifest.path(first)))
    if ACD_MEMBER not in record:
        raise DataError(
            f"{manifest.path(first)}:{record['__key__']}: ACD labels (data.acd.enabled) need an "
            f"{ACD_MEMBER} member in every record, this first one has none: {hint}"
        )


_DECODERS = {"mesh": decode_mesh_record, "points": decode_point_record}


def shape_shard_samples(
    location: str, modality: str = "mesh", num_points: int = 2048, seed: int = 0, with_acd: bool = False
) -> ShardSamples:
    """The ``modality`` (``mesh`` or ``points``) shard set at ``location`` (a folder with ``shards.json``,
    or that file), each record decoding to ``num_points`` points; ``with_acd``: ACD labels from the
    records' ``acd.npz``, checked here (:func:`check_acd_members`) so that a set without them fails before
    training starts."""
    manifest = read_manifest(location, modality=modality)
    if with_acd:
        check_acd_members(manifest)
    decode = functools.partial(
        _DECODERS[modality], num_points=int(num_points), seed=int(seed), with_acd=with_acd
    )
    return ShardSamples(manifest, decode)
