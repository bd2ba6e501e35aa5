"""Point / mesh I/O, surface sampling and unit-sphere normalisation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmssl.errors import CorruptFileError
from mmssl.modalities.pointcloud.io import (
    face_normals_and_areas,
    normalize_unit_sphere,
    read_mesh,
    read_points,
    sample_points,
    write_mesh,
    write_points,
)
from mmssl.modalities.pointcloud.procedural import box

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "3d"


def _box_mesh(size=(1.0, 2.0, 4.0)):
    v, f = box((0.0, 0.0, 0.0), size)
    return v, f


# ---------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("as_tensor", [True, False])
def test_normalize_unit_sphere_centres_and_scales(as_tensor):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(500, 3)) * [3.0, 0.5, 1.0] + [10.0, -4.0, 2.0]
    normals = rng.normal(size=(500, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    pts = np.concatenate([xyz, normals], 1).astype(np.float32)
    out = normalize_unit_sphere(torch.from_numpy(pts) if as_tensor else pts)
    assert isinstance(out, torch.Tensor) == as_tensor
    out = np.asarray(out)
    np.testing.assert_allclose(out[:, :3].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out[:, :3], axis=1).max(), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out[:, 3:], pts[:, 3:])  # normals untouched
    # a similarity transform: ratios of pairwise distances are kept
    d_in = np.linalg.norm(xyz[1:] - xyz[:-1], axis=1)
    d_out = np.linalg.norm(out[1:, :3] - out[:-1, :3], axis=1)
    np.testing.assert_allclose(d_out / d_in, (d_out / d_in)[0], rtol=1e-4)


# ---------------------------------------------------------------------------------------- sampling


def test_sample_points_lie_on_faces_with_unit_outward_normals():
    v, f = _box_mesh()
    points, normals, face_index = sample_points(v, f, 4000, seed=0)
    assert points.shape == (4000, 3) and normals.shape == (4000, 3) and face_index.shape == (4000,)
    p = points.numpy() / [0.5, 1.0, 2.0]  # box half-extents -> unit cube
    axis = np.abs(p).argmax(1)
    np.testing.assert_allclose(np.abs(p).max(1), 1.0, atol=1e-5)  # on the surface
    np.testing.assert_allclose(normals.norm(dim=1).numpy(), 1.0, atol=1e-6)
    expected = np.zeros((4000, 3))
    expected[np.arange(4000), axis] = np.sign(p[np.arange(4000), axis])
    np.testing.assert_allclose(normals.numpy(), expected, atol=1e-6)  # the face's outward normal
    # each point lies inside the triangle it reports (barycentric coordinates in [0, 1])
    tri = v[f[face_index.numpy()]]
    e1, e2, d = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], points.numpy() - tri[:, 0]
    g = np.stack(
        [np.einsum("ij,ij->i", e1, e1), np.einsum("ij,ij->i", e1, e2), np.einsum("ij,ij->i", e2, e2)], 1
    )
    r = np.stack([np.einsum("ij,ij->i", d, e1), np.einsum("ij,ij->i", d, e2)], 1)
    det = g[:, 0] * g[:, 2] - g[:, 1] ** 2
    b1 = (g[:, 2] * r[:, 0] - g[:, 1] * r[:, 1]) / det
    b2 = (g[:, 0] * r[:, 1] - g[:, 1] * r[:, 0]) / det
    assert (b1 >= -1e-6).all() and (b2 >= -1e-6).all() and (b1 + b2 <= 1 + 1e-6).all()


def test_sample_points_area_weighted():
    v, f = _box_mesh((1.0, 2.0, 4.0))
    points, _, _ = sample_points(v, f, 40000, seed=1)
    axis = np.abs(points.numpy() / [0.5, 1.0, 2.0]).argmax(1)
    # face areas: x-faces 2*(2*4), y-faces 2*(1*4), z-faces 2*(1*2), total 28
    np.testing.assert_allclose(np.bincount(axis, minlength=3) / 40000, [16 / 28, 8 / 28, 4 / 28], atol=0.01)


def test_sample_points_seeded_and_small_labelled_parts_covered():
    v1, f1 = box((0, 0, 0), (1, 1, 1))
    v2, f2 = box((2, 0, 0), (0.01, 0.01, 0.01))  # area ratio 1e-4
    v = np.concatenate([v1, v2])
    f = np.concatenate([f1, f2 + len(v1)])
    labels = np.array([0] * len(f1) + [1] * len(f2))
    a = sample_points(v, f, 64, seed=3)
    b = sample_points(v, f, 64, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    _, _, idx = sample_points(v, f, 64, seed=3, face_labels=labels)
    assert set(labels[idx.numpy()].tolist()) == {0, 1}
    with pytest.raises(ValueError):
        sample_points(v, f, 0)


# -------------------------------------------------------------------------------------- round trips


def test_ply_points_with_normals_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(100, 3)).astype(np.float32)
    nrm = rng.normal(size=(100, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    write_points(tmp_path / "a.ply", pts, nrm)
    back = read_points(tmp_path / "a.ply")
    assert back.shape == (100, 6) and back.dtype == torch.float32
    np.testing.assert_allclose(back[:, :3].numpy(), pts, atol=1e-6)
    np.testing.assert_allclose(back[:, 3:].numpy(), nrm, atol=1e-6)


def test_xyz_points_round_trip(tmp_path):
    pts = np.random.default_rng(1).uniform(-1, 1, size=(50, 3))
    write_points(tmp_path / "a.xyz", pts)
    back = read_points(tmp_path / "a.xyz")
    assert back.shape == (50, 3)
    np.testing.assert_allclose(back.numpy(), pts, atol=1e-5)


@pytest.mark.parametrize("ext", [".obj", ".off", ".ply"])
def test_mesh_round_trip(tmp_path, ext):
    v, f = _box_mesh()
    write_mesh(tmp_path / f"box{ext}", v, f)
    v2, f2 = read_mesh(tmp_path / f"box{ext}")
    assert v2.dtype == torch.float32 and f2.dtype == torch.int64
    assert v2.shape == v.shape and f2.shape == f.shape
    np.testing.assert_allclose(v2.numpy()[f2.numpy()], v[f], atol=1e-5)  # same triangles


def test_real_obj_mesh():
    path = SHARED / "common-3d-test-models" / "data" / "spot.obj"
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    v, f = read_mesh(path)
    assert v.shape == (2930, 3) and f.shape == (5856, 3)  # counts stated in the data README
    points, normals, _ = sample_points(v, f, 1000, seed=0)
    assert torch.isfinite(points).all()
    np.testing.assert_allclose(normals.norm(dim=1).numpy(), 1.0, atol=1e-5)


# -------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.xyz", ""),
        ("nan.xyz", "0 0 0\nnan 1 2\n1 1 1\n"),
        ("empty.txt", ""),
        ("nan.txt", "0 0 0 0 0 1\nnan 0 0 0 0 1\n"),
        ("garbage.ply", "this is not a ply file\n"),
    ],
)
def test_bad_point_files_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorruptFileError) as info:
        read_points(path)
    assert str(path) in str(info.value) and info.value.path == path


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.obj", ""),
        ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n"),
        ("points_only.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n"),
    ],
)
def test_bad_mesh_files_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorruptFileError) as info:
        read_mesh(path)
    assert str(path) in str(info.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(CorruptFileError, match="nope.ply"):
        read_points(tmp_path / "nope.ply")
    with pytest.raises(CorruptFileError, match="nope.obj"):
        read_mesh(tmp_path / "nope.obj")


# ------------------------------------------------------------------ OBJ files cut short or without faces


def _grid_obj_text(tmp_path, n=6):
    """An n x n vertex grid triangulated into 2 (n-1)^2 faces, as Open3D writes it (counts in the header)."""
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], axis=1)
    a = np.array([i * n + j for i in range(n - 1) for j in range(n - 1)])
    f = np.concatenate([np.stack([a, a + 1, a + n], 1), np.stack([a + 1, a + n + 1, a + n], 1)])
    write_mesh(tmp_path / "grid.obj", v, f)
    return (tmp_path / "grid.obj").read_text(), len(v), len(f)


def test_obj_cut_at_three_quarters_is_named_as_truncated(tmp_path):
    text, nv, nf = _grid_obj_text(tmp_path)
    assert (nv, nf) == (36, 50) and "# number of triangles: 50" in text
    cut = tmp_path / "cut.obj"
    partial = text[: int(0.75 * len(text))]  # ends mid-face
    cut.write_text(partial)
    last, line = partial.rsplit("\n", 1)[1], partial.count("\n") + 1
    assert last.startswith("f ") and len(last.split()) < 4  # fewer than three corners left
    with pytest.raises(CorruptFileError) as info:
        read_mesh(cut)
    assert info.value.path == cut
    assert str(info.value) == (
        f"corrupt or unreadable file: {cut} (truncated: the last line, {last!r} (line {line}), is incomplete)"
    )
    # cut at a line end: the header's counts still tell
    lines = text.splitlines(keepends=True)
    cut.write_text("".join(lines[: int(0.9 * len(lines))]))
    with pytest.raises(
        CorruptFileError, match=r"truncated: its header declares 36 vertices and 50 faces, the"
    ):
        read_mesh(cut)
    # no header counts (another exporter), cut mid-line
    body = "".join(line for line in lines if not line.startswith("#"))
    cut.write_text(body[: int(0.75 * len(body))])
    with pytest.raises(
        CorruptFileError, match=r"truncated: the last line, 'f [0-9 ]*' \(line \d+\), is incomplete"
    ):
        read_mesh(cut)


def test_obj_without_faces_or_with_missing_vertices_says_so(tmp_path):
    points = tmp_path / "points_only.obj"
    points.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(CorruptFileError) as info:
        read_mesh(points)
    assert str(info.value).endswith("(3 vertices but no faces ('f' lines): a point cloud? use read_points)")
    missing = tmp_path / "missing_vertex.obj"
    missing.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 3 7\n")
    with pytest.raises(CorruptFileError) as info:
        read_mesh(missing)
    assert str(info.value).endswith(
        "(face on line 5 refers to vertex 7, but the file has 3 (truncated or corrupt))"
    )


def test_obj_polygons_are_triangulated_and_a_complete_last_line_needs_no_newline(tmp_path):
    """A quad and a triangle: open3d alone keeps the triangle and drops the quad without a word."""
    path = tmp_path / "quad_and_triangle.obj"
    path.write_text("# two faces\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nf -5 -4 -3 -2\nf 2 5 3")
    v, f = read_mesh(path)
    assert v.shape == (5, 3) and f.shape == (3, 3)
    _, areas = face_normals_and_areas(v.numpy(), f.numpy())
    assert areas.sum() == pytest.approx(1.0 + 0.5)  # the unit square and the triangle, nothing lost
