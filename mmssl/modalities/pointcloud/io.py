"""Point-cloud and mesh I/O, area-weighted surface sampling, unit-sphere normalisation.

Formats (open3d, imported lazily because it takes seconds to import):

- point clouds: ``.ply``, ``.pcd``, ``.xyz``, ``.xyzn``, ``.xyzrgb``, ``.pts``; plus whitespace-separated
  ``.txt`` rows ``x y z [nx ny nz ...]`` (numpy), the layout of ShapeNetPart's per-shape files;
- triangle meshes: ``.obj``, ``.off``, ``.ply``, ``.stl`` (polygons are triangulated: by the reader, and
  for OBJ by :func:`read_mesh` itself, as open3d's OBJ reader skips faces of more than three corners).

open3d does not raise on a bad file, it logs and returns an empty object, so every reader checks
the result itself: an empty, NaN/inf-filled or unreadable file raises
:class:`~mmssl.errors.CorruptFileError` naming it.

OBJ files are also checked as text, because open3d reads a cut-short OBJ as the smaller mesh it still
holds and reports an OBJ it cannot use as "no vertices": an incomplete last line (a file cut mid-line),
fewer ``v`` / ``f`` lines than the header comment declares (Open3D's and MeshLab's exporters write the
counts), vertices without any face, and a face referring to a vertex the file does not have are each
reported as such (:func:`check_obj_text`).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from mmssl.errors import CorruptFileError

T = TypeVar("T")

POINT_EXTENSIONS: tuple[str, ...] = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts", ".txt")
MESH_EXTENSIONS: tuple[str, ...] = (".obj", ".off", ".ply", ".stl")


@contextlib.contextmanager
def _quiet_open3d() -> Iterator[object]:
    """Import open3d with its console warnings silenced (we raise our own, naming the file)."""
    import open3d as o3d

    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        yield o3d


def _check_finite(path: Path, array: np.ndarray, what: str) -> None:
    if array.size == 0:
        raise CorruptFileError(path, f"no {what}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=-1).sum())
        raise CorruptFileError(path, f"{bad} of {len(array)} {what} are NaN or infinite")


TEXT_POINT_EXTENSIONS: tuple[str, ...] = (".xyz", ".xyzn", ".xyzrgb", ".pts", ".txt")


def _all_numbers(values: list[bytes]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _check_text_rows(path: Path, data: bytes) -> None:
    """A text point file whose rows are not all numbers, or cut short mid-line: open3d reads the
    numeric rows it finds and silently drops the rest, so a file with one good row and then garbage
    would be read as a one-point cloud. Blank lines, ``#`` / ``//`` comments, a byte-order mark and
    header lines before the first numeric row (``X Y Z``; a ``.pts`` count) are what readers skip, and
    pass. A cut is seen as a last line without its newline and with fewer values than the first (a cut
    inside the last number of a row cannot be told from a shorter file)."""
    lines = []
    for number, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        values = line.split()
        if values and not values[0].startswith((b"#", b"//")):
            lines.append((number, values, _all_numbers(values)))
    while lines and not lines[0][2]:  # a header before the numbers
        lines.pop(0)
    for number, values, numeric in lines:
        if not numeric:
            shown = b" ".join(values).decode(errors="replace")[:60]
            raise CorruptFileError(path, f"line {number} is not numbers: '{shown}'")
    if not data or data.endswith(b"\n"):
        return
    first, last = (lines[0][1], lines[-1][1]) if lines else ([], [])
    if len(lines) > 1 and len(last) != len(first):
        shown = b" ".join(last).decode(errors="replace")
        raise CorruptFileError(
            path, f"truncated: the last line '{shown}' has {len(last)} values, the first {len(first)}"
        )


def read_points(path: str | Path, data: bytes | None = None) -> torch.Tensor:
    """Read a point cloud: float32 ``[N, 3]``, or ``[N, 6]`` (xyz + normals) when the file has normals.

    Raises :class:`~mmssl.errors.CorruptFileError` naming the file when it is missing, unreadable,
    empty, cut short (a text file's incomplete last row), or holds a NaN/inf coordinate.

    ``data``: the file's bytes (a shard member); ``path`` then names them in errors and its extension
    says what they are. ``.txt`` rows are parsed from memory; open3d reads the other formats from files
    only, so their bytes go through a temporary file (deleted at once), as :func:`read_mesh` does.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if data is None and not path.is_file():
        raise CorruptFileError(path, "no such file")
    if suffix not in POINT_EXTENSIONS:
        raise CorruptFileError(
            path, f"unsupported point-cloud extension; use one of {', '.join(POINT_EXTENSIONS)}"
        )
    if data is not None and suffix != ".txt":
        return _read_bytes_via_file(path, data, read_points)
    if suffix in TEXT_POINT_EXTENSIONS:
        if data is None:
            data = path.read_bytes()
        _check_text_rows(path, data)
    if suffix == ".txt":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
                rows = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise CorruptFileError(path, f"not numeric rows: {err}") from err
        if rows.size and rows.shape[1] < 3:
            raise CorruptFileError(path, f"rows have {rows.shape[1]} columns, need x y z")
        # columns 4-6 are normals when they are unit vectors (ShapeNetPart's x y z nx ny nz part); colours
        # (x y z r g b) or zeros are not, and the normals are then estimated by whoever needs them
        normals = rows[:, 3:6] if rows.shape[1] >= 6 else None
        if normals is not None and not _unit_vectors(normals):
            normals = None
        array = rows[:, :3] if normals is None else rows[:, :6]
        _check_finite(path, array, "points")
        return torch.from_numpy(array.astype(np.float32))
    with _quiet_open3d() as o3d:
        # Keep NaN points so that we can report them instead of silently dropping them.
        cloud = o3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
        points = np.asarray(cloud.points, dtype=np.float64)
        normals = np.asarray(cloud.normals, dtype=np.float64) if cloud.has_normals() else None
    _check_finite(path, points, "points")
    if normals is not None and len(normals) == len(points):
        _check_finite(path, normals, "normals")
        points = np.concatenate([points, normals], axis=1)
    return torch.from_numpy(points.astype(np.float32))


def _unit_vectors(rows: np.ndarray) -> bool:
    """Whether ``rows`` (finite) are unit vectors, up to text rounding."""
    norms = np.linalg.norm(rows, axis=1)
    return bool(np.isfinite(norms).all() and np.abs(norms - 1).max() < 0.05)


def estimate_normals(points: np.ndarray) -> np.ndarray:
    """Unit normals ``float32 [N, 3]`` of a point cloud without any: open3d's PCA over the 16 nearest
    neighbours, oriented consistently over the cloud (a minimum spanning tree over 10-neighbour tangent
    planes, Hoppe et al., SIGGRAPH 1992). The sign of the whole orientation is arbitrary. A flat, straight
    or single-point cloud cannot be oriented that way (Qhull fails on it): its normals are left as PCA
    gives them (a flat cloud's are still perpendicular to it, each with its own sign)."""
    with _quiet_open3d() as o3d:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
        if len(points) > 10:
            try:
                cloud.orient_normals_consistent_tangent_plane(10)
            except RuntimeError:  # degenerate: no 3-D hull to build the tangent-plane graph on
                pass
        return np.asarray(cloud.normals, dtype=np.float32)


def subsample_indices(n_rows: int, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """``num_points`` row indices: without replacement when the file has enough rows, else all rows
    plus a random top-up with replacement."""
    if n_rows >= num_points:
        return np.sort(rng.choice(n_rows, num_points, replace=False))
    return np.concatenate([np.arange(n_rows), rng.choice(n_rows, num_points - n_rows, replace=True)])


def read_point_file(path: str | Path, data: bytes | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(xyz float32 [N, 3], normals float32 [N, 3] or None)`` of a point-cloud file (or its bytes,
    ``data``), as :func:`read_points` reads it: the shape an unlabelled point-cloud set is made of."""
    array = read_points(path, data).numpy()
    return array[:, :3].copy(), (array[:, 3:6].copy() if array.shape[1] >= 6 else None)


def sample_point_cloud(
    xyz: np.ndarray, normals: np.ndarray | None, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` of a cloud's points (:func:`subsample_indices` with ``rng``) and their normals, in
    the cloud's frame; a cloud without normals gets :func:`estimate_normals` of all its points first
    (a normal needs the neighbourhood, which a subsample thins)."""
    if normals is None:
        normals = estimate_normals(xyz)
    keep = subsample_indices(len(xyz), num_points, rng)
    return xyz[keep], normals[keep]


def write_points(path: str | Path, points: torch.Tensor | np.ndarray, normals=None) -> None:
    """Write ``points [N, 3]`` (and ``normals [N, 3]``) in the format named by the extension.

    ``.xyz`` holds coordinates only; use ``.ply``, ``.pcd`` or ``.xyzn`` to keep normals.
    """
    path = Path(path)
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    with _quiet_open3d() as o3d:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        if normals is not None:
            cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, dtype=np.float64))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=path.suffix.lower() != ".ply"):
            raise OSError(f"open3d could not write {path}")


# OBJ statements: "v x y z", "f a b c", ... (a file's last line that is none of these was cut short)
_OBJ_MIN_NUMBERS = {b"v": 3, b"vn": 3, b"vt": 1, b"vp": 1}
_OBJ_MIN_REFS = {b"f": 3, b"fo": 3, b"l": 2, b"p": 1}
_OBJ_OTHER = {
    b"o", b"g", b"s", b"mg", b"usemtl", b"mtllib", b"usemap", b"maplib", b"cstype", b"deg", b"bmat",
    b"step", b"curv", b"curv2", b"surf", b"parm", b"trim", b"hole", b"scrv", b"sp", b"end", b"con",
    b"bevel", b"c_interp", b"d_interp", b"lod", b"shadow_obj", b"trace_obj", b"ctech", b"stech", b"call",
    b"csh",
}  # fmt: skip
_OBJ_REF = re.compile(rb"-?\d+(/-?\d*(/-?\d+)?)?")
# Element counts that exporters write in the header comments: Open3D, then MeshLab (both forms).
_OBJ_DECLARED = {
    "vertices": (
        re.compile(rb"#\s*number of vertices\s*:\s*(\d+)", re.I),
        re.compile(rb"#\s*vertices\s*:\s*(\d+)", re.I),
        re.compile(rb"#\s*(\d+)\s+vertices\b", re.I),
    ),
    "faces": (
        re.compile(rb"#\s*number of triangles\s*:\s*(\d+)", re.I),
        re.compile(rb"#\s*faces\s*:\s*(\d+)", re.I),
        re.compile(rb"#\s*(\d+)\s+faces\b", re.I),
    ),
}


def _count_obj_lines(text: bytes, keyword: bytes) -> int:
    """How many lines of ``text`` are ``keyword`` statements."""
    return len(re.findall(rb"\n[ \t]*" + re.escape(keyword) + rb"[ \t]", b"\n" + text))


def _obj_line_is_complete(line: bytes) -> bool:
    """Whether one OBJ line is a whole statement: enough numbers / vertex references, a known keyword."""
    tokens = line.split()
    if not tokens or tokens[0].startswith(b"#"):
        return True
    keyword, args = tokens[0], tokens[1:]
    if keyword in _OBJ_MIN_NUMBERS:
        try:
            [float(a) for a in args]
        except ValueError:
            return False
        return len(args) >= _OBJ_MIN_NUMBERS[keyword]
    if keyword in _OBJ_MIN_REFS:
        return len(args) >= _OBJ_MIN_REFS[keyword] and all(_OBJ_REF.fullmatch(a) for a in args)
    return keyword in _OBJ_OTHER


def _obj_header_counts(text: bytes) -> dict[str, int]:
    """The vertex / face counts declared in the comment lines before the first statement."""
    declared: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith(b"#"):
            break
        for what, patterns in _OBJ_DECLARED.items():
            for pattern in patterns:
                match = pattern.match(line)
                if match and what not in declared:
                    declared[what] = int(match.group(1))
    return declared


def check_obj_text(path: str | Path, text: bytes | None = None) -> None:
    """Check that an OBJ file (``text``: its bytes, when already read) was not cut short.

    Raises :class:`~mmssl.errors.CorruptFileError` naming the file when its last line is an incomplete
    statement (a file cut mid-line: ``f 18 2``, ``v 0.5 1.``, ``usem``) or when it holds fewer ``v`` or
    ``f`` lines than its header comment declares. A file cut exactly at a line end, without counts in
    its header, cannot be told from a smaller mesh.
    """
    path = Path(path)
    text = path.read_bytes() if text is None else text
    if text and not text.endswith((b"\n", b"\r")):
        last = text.rsplit(b"\n", 1)[-1]
        if not _obj_line_is_complete(last):
            shown, line = last.decode("utf-8", "replace")[:60], text.count(b"\n") + 1
            raise CorruptFileError(path, f"truncated: the last line, {shown!r} (line {line}), is incomplete")
    declared = _obj_header_counts(text[:4096])
    keywords = {"vertices": b"v", "faces": b"f"}
    present = {what: _count_obj_lines(text, keywords[what]) for what in declared}
    if any(present[what] < count for what, count in declared.items()):
        said = " and ".join(f"{declared[w]} {w}" for w in declared)
        holds = " and ".join(f"{present[w]} {w}" for w in declared)
        raise CorruptFileError(path, f"truncated: its header declares {said}, the file holds {holds}")


def _obj_failure(text: bytes) -> str:
    """Why open3d read no triangle mesh from an OBJ that passed :func:`check_obj_text`."""
    n_v, n_f = _count_obj_lines(text, b"v"), _count_obj_lines(text, b"f")
    if n_v == 0:
        return "no vertices ('v' lines)"
    if n_f == 0:
        return f"{n_v} vertices but no faces ('f' lines): a point cloud? use read_points"
    kinds = {b"v": "vertex", b"vt": "texture coordinate", b"vn": "normal"}  # in a reference's order
    lines = text.splitlines()
    totals = dict.fromkeys(kinds, 0)
    for line in lines:
        tokens = line.split()
        if tokens and tokens[0] in totals:
            totals[tokens[0]] += 1
    seen = dict.fromkeys(kinds, 0)
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if tokens and tokens[0] in seen:
            seen[tokens[0]] += 1
        if not tokens or tokens[0] != b"f":
            continue
        for ref in tokens[1:]:
            for kind, part in zip(kinds, ref.split(b"/")):
                if not part:
                    continue
                index = int(part) if re.fullmatch(rb"-?\d+", part) else 0
                # Positive: the n-th in the file; negative: counted back from this line.
                if not (1 <= index <= totals[kind] or 0 < -index <= seen[kind]):
                    have = totals[kind] if index >= 0 else seen[kind]
                    return (
                        f"face on line {number} refers to {kinds[kind]} {part.decode(errors='replace')}, "
                        f"but the file has {have} (truncated or corrupt)"
                    )
    return f"open3d read no triangles from its {n_v} vertices and {n_f} faces"


def _has_polygons(text: bytes) -> bool:
    """Whether an OBJ has a face with more than three corners (open3d's reader skips those)."""
    return re.search(rb"(?m)^[ \t]*f([ \t]+\S+){4,}", text) is not None


def _read_obj_polygons(path: Path, text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices [V, 3], triangles [F, 3])`` of an OBJ with polygon faces, each polygon split into a fan
    of triangles around its first corner; only the vertices the faces use are kept (as open3d does).
    A malformed line or a reference to a missing vertex: CorruptFileError naming the file."""
    vertices: list[list[float]] = []
    triangles: list[tuple[int, int, int]] = []
    try:
        for line in text.splitlines():
            tokens = line.split()
            if tokens and tokens[0] == b"v":
                vertices.append([float(t) for t in tokens[1:4]])
            elif tokens and tokens[0] == b"f":
                corners = []
                for ref in tokens[1:]:
                    index = int(ref.split(b"/")[0])
                    corners.append(index - 1 if index > 0 else len(vertices) + index)
                if min(corners) < 0:
                    raise IndexError
                triangles += [(corners[0], corners[k], corners[k + 1]) for k in range(1, len(corners) - 1)]
        faces = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
        if faces.size and faces.max() >= len(vertices):
            raise IndexError
    except (ValueError, IndexError):
        raise CorruptFileError(path, _obj_failure(text)) from None
    used, faces = np.unique(faces, return_inverse=True)
    return np.asarray(vertices, dtype=np.float64).reshape(-1, 3)[used], faces.reshape(-1, 3)


def read_mesh(path: str | Path, data: bytes | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a triangle mesh: ``(vertices float32 [V, 3], faces int64 [F, 3])``.

    Raises :class:`~mmssl.errors.CorruptFileError` naming the file when it is missing, unreadable,
    has no triangles, a NaN/inf vertex, or a face index out of range. Vertices at the same position
    are merged (texture seams do not split the surface). An OBJ is checked as text too
    (:func:`check_obj_text`): cut short (an incomplete last line, fewer elements than its header
    declares), vertices without faces, a face referring to a missing vertex are each named. An OBJ
    with faces of more than three corners is read here, each polygon split into a fan of triangles
    (open3d's reader would skip those faces without a word).

    ``data``: the file's bytes (a shard member); ``path`` then names them in errors and its extension
    says what they are (``shard-000000.tar:000000012.obj``). An OBJ is parsed from memory by the parser
    above (the same triangles as open3d's reader gives for the file, up to vertex order); open3d reads
    the other formats from files only, so their bytes go through a temporary file
    (:func:`_read_bytes_via_file`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if data is None and not path.is_file():
        raise CorruptFileError(path, "no such file")
    if suffix not in MESH_EXTENSIONS:
        raise CorruptFileError(path, f"unsupported mesh extension; use one of {', '.join(MESH_EXTENSIONS)}")
    if data is not None and suffix != ".obj":
        return _read_bytes_via_file(path, data, read_mesh)
    obj_text = (path.read_bytes() if data is None else data) if suffix == ".obj" else None
    if obj_text is not None:
        check_obj_text(path, obj_text)
    with _quiet_open3d() as o3d:
        # open3d would drop faces of 4+ corners, and reads files only
        if obj_text is not None and (data is not None or _has_polygons(obj_text)):
            v, f = _read_obj_polygons(path, obj_text)
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f))
        else:
            mesh = o3d.io.read_triangle_mesh(str(path), enable_post_processing=False, print_progress=False)
        # OBJ readers split a vertex wherever its texture coordinate or normal differs; we want the
        # geometry only, with one vertex per position (as written in the file's "v" lines).
        mesh.remove_duplicated_vertices()
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.triangles, dtype=np.int64)
    if obj_text is not None and (vertices.size == 0 or faces.size == 0):
        # open3d keeps only the vertices its faces use: "no vertices" would hide what is wrong.
        raise CorruptFileError(path, _obj_failure(obj_text))
    _check_finite(path, vertices, "vertices")
    if faces.size == 0:
        raise CorruptFileError(path, "no triangles (a point cloud? use read_points)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise CorruptFileError(path, f"face index out of range [0, {len(vertices)})")
    return torch.from_numpy(vertices.astype(np.float32)), torch.from_numpy(faces)


def _read_bytes_via_file(path: Path, data: bytes, read: Callable[[Path], T]) -> T:
    """``read`` of a file's bytes: written to a temporary file (deleted at once) because open3d's readers
    take a file name only; errors name ``path`` (the shard member), not the temporary file. The
    documented fallback for the formats that cannot be parsed from memory (an OBJ mesh, ``.txt``
    points are)."""
    with tempfile.TemporaryDirectory(prefix="mmssl-3d-") as folder:
        file = Path(folder) / f"shape{path.suffix.lower()}"
        file.write_bytes(data)
        try:
            return read(file)
        except CorruptFileError as err:
            raise CorruptFileError(path, err.reason) from err


def read_and_sample_mesh(
    path: str | Path, num_points: int, rng: np.random.Generator, data: bytes | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(vertices, faces, points, normals)`` of one mesh file (or its bytes, ``data``: see
    :func:`read_mesh`), ``num_points`` sampled with ``rng``; a mesh that cannot be sampled (zero area)
    is a :class:`~mmssl.errors.CorruptFileError` too."""
    try:
        vertices, faces = read_mesh(path, data)
        points, normals, _ = sample_points(vertices, faces, num_points, rng)
    except CorruptFileError:
        raise
    except ValueError as err:
        raise CorruptFileError(path, str(err)) from err
    return vertices, faces, points, normals


def write_mesh(
    path: str | Path, vertices: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray
) -> None:
    """Write a triangle mesh in the format named by the extension (OBJ, OFF, PLY, STL)."""
    path = Path(path)
    with _quiet_open3d() as o3d:
        mesh = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(np.asarray(vertices, dtype=np.float64)),
            o3d.utility.Vector3iVector(np.asarray(faces, dtype=np.int32)),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if not o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=True):
            raise OSError(f"open3d could not write {path}")


def face_normals_and_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals ``[F, 3]`` (right-hand rule on the vertex order; zero for degenerate faces) and
    areas ``[F]``."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    norm = np.linalg.norm(cross, axis=1)
    normals = np.divide(cross, norm[:, None], out=np.zeros_like(cross), where=norm[:, None] > 0)
    return normals, 0.5 * norm


def sample_points(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    n: int,
    seed: int | np.random.Generator = 0,
    face_labels: torch.Tensor | np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample ``n`` points uniformly over the surface: ``(points [n, 3], normals [n, 3], face_index [n])``.

    A face is drawn with probability proportional to its area, then a point uniformly inside it
    with the square-root barycentric map (Osada et al. 2002, "Shape distributions", eq. 1):
    ``p = (1 - sqrt(r1)) a + sqrt(r1) (1 - r2) b + sqrt(r1) r2 c``. Normals are the face normals
    (unit length, right-hand rule on the face's vertex order). ``face_index`` gives each point's face,
    so per-face data (part labels) follows with ``face_labels[face_index]``.

    ``face_labels`` (optional, ``[F]``): when given, every label whose faces have non-zero area gets at
    least one point (a tiny part is not lost at low ``n``): missing labels take over points of the
    label that has the most. Otherwise sampling is purely area-weighted.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    normals, areas = face_normals_and_areas(v, f)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("mesh has zero surface area")
    face_index = rng.choice(len(f), size=n, p=areas / total)
    if face_labels is not None:
        face_index = _cover_labels(face_index, np.asarray(face_labels), areas, rng)
    r1 = np.sqrt(rng.random(n))[:, None]
    r2 = rng.random(n)[:, None]
    a, b, c = (v[f[face_index, k]] for k in range(3))
    points = (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c
    return (
        torch.from_numpy(points.astype(np.float32)),
        torch.from_numpy(normals[face_index].astype(np.float32)),
        torch.from_numpy(face_index.astype(np.int64)),
    )


def _cover_labels(
    face_index: np.ndarray, labels: np.ndarray, areas: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Give each label with positive area at least one sample, taken from the most-sampled label."""
    face_index = face_index.copy()
    for label in np.unique(labels):
        faces_of = np.flatnonzero((labels == label) & (areas > 0))
        sampled = labels[face_index]
        if len(faces_of) == 0 or (sampled == label).any():
            continue
        values, counts = np.unique(sampled, return_counts=True)
        if counts.max() < 2:
            break  # fewer samples than labels: nothing left to give
        slot = rng.choice(np.flatnonzero(sampled == values[counts.argmax()]))
        face_index[slot] = rng.choice(faces_of, p=areas[faces_of] / areas[faces_of].sum())
    return face_index


def unit_sphere_transform(points: torch.Tensor | np.ndarray) -> tuple[np.ndarray, float]:
    """``(centre [3], scale)`` such that ``(points - centre) / scale`` is centred on the centroid with
    the farthest point at distance 1 (the PointNet / ShapeNetPart convention)."""
    xyz = np.asarray(points, dtype=np.float64)[..., :3]
    centre = xyz.mean(axis=0)
    scale = float(np.linalg.norm(xyz - centre, axis=1).max())
    return centre, scale if scale > 0 else 1.0


def normalize_unit_sphere(points: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Centre ``points [N, 3+]`` on their centroid and scale so the farthest point is at distance 1.

    Only the first three columns (xyz) change; extra columns (normals) are unit vectors that a
    translation and a uniform scale leave as they are. Returns the input's type (tensor or array).
    """
    centre, scale = unit_sphere_transform(points)
    if isinstance(points, torch.Tensor):
        out = points.clone()
        out[..., :3] = (points[..., :3] - torch.as_tensor(centre, dtype=points.dtype)) / scale
        return out
    out = np.array(points, copy=True)
    out[..., :3] = (out[..., :3] - centre) / scale
    return out
