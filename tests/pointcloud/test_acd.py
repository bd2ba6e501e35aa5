"""ACD labels: CoACD on a two-box mesh, nearest-hull assignment, the on-disk cache, timeouts and fallbacks."""

import numpy as np
import pytest

from mmssl.modalities.pointcloud.acd import decompose as decompose_module
from mmssl.modalities.pointcloud.acd.assign import assign_points
from mmssl.modalities.pointcloud.acd.batch import decompose_many
from mmssl.modalities.pointcloud.acd.cache import ACDCache, cache_key
from mmssl.modalities.pointcloud.acd.decompose import decompose, fallback_decomposition
from mmssl.modalities.pointcloud.acd.geometry import convex_piece_hull, signed_volume
from mmssl.modalities.pointcloud.acd.job import ACDJob, Decomposition
from mmssl.modalities.pointcloud.acd.params import ACDParams
from mmssl.modalities.pointcloud.io import sample_points
from mmssl.modalities.pointcloud.procedural import arc, box, tube


def two_boxes(gap: float = 0.5):
    """A unit cube at the origin and a 0.5 x 2 x 0.5 bar ``gap`` to its right; face labels 0 / 1."""
    v1, f1 = box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    v2, f2 = box((0.75 + gap, 0.0, 0.0), (0.5, 2.0, 0.5))
    vertices = np.concatenate([v1, v2])
    faces = np.concatenate([f1, f2 + len(v1)])
    labels = np.array([0] * len(f1) + [1] * len(f2))
    return vertices, faces, labels


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when labelings ``a`` and ``b`` group the points identically (ids may differ)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_assign_points_to_closest_hull_boundary():
    vertices, faces, labels = two_boxes()
    hulls = [(vertices[:8], faces[:12]), (vertices[8:] - 0.0, faces[12:] - 8)]
    points, _, face_index = sample_points(vertices, faces, 500, seed=0)
    got = assign_points(points.numpy(), Decomposition(hulls, "test"))
    np.testing.assert_array_equal(got, labels[face_index.numpy()])
    # inside points go to the hull containing them; empty decomposition gives -1
    np.testing.assert_array_equal(
        assign_points(np.array([[0.1, 0.2, 0.0], [1.25, 0.8, 0.0]]), Decomposition(hulls, "t")), [0, 1]
    )
    assert (assign_points(points.numpy(), Decomposition([], "none")) == -1).all()


WHOLE = ACDParams(split_pieces=False)  # CoACD on the whole mesh, even where its pieces are convex


def test_coacd_two_boxes_gives_two_components_and_correct_labels():
    vertices, faces, labels = two_boxes()
    decomposition = decompose(ACDJob("two boxes", vertices, faces), WHOLE)
    assert decomposition.method == "coacd" and len(decomposition) == 2
    points, _, face_index = sample_points(vertices, faces, 1000, seed=1)
    got = assign_points(points.numpy(), decomposition)
    assert _same_partition(got, labels[face_index.numpy()])


class _CountingCoacd:
    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, vertices, faces, params):
        self.calls += 1
        return self.real(vertices, faces, params)


def test_cache_hit_returns_same_labels_without_calling_coacd(tmp_path, monkeypatch):
    counter = _CountingCoacd(decompose_module.run_coacd)
    monkeypatch.setattr(decompose_module, "run_coacd", counter)
    vertices, faces, _ = two_boxes()
    points = sample_points(vertices, faces, 300, seed=2)[0].numpy()
    job = ACDJob("two boxes", vertices, faces)
    first, stats1 = decompose_many([job], WHOLE, cache_dir=tmp_path, workers=0, progress=False)
    assert counter.calls == 1 and stats1.computed == 1 and stats1.cached == 0
    second, stats2 = decompose_many(
        [ACDJob("again", vertices.copy(), faces.copy())], WHOLE, cache_dir=tmp_path, workers=0
    )
    assert counter.calls == 1 and stats2.cached == 1 and stats2.computed == 0  # served from disk
    np.testing.assert_array_equal(assign_points(points, first[0]), assign_points(points, second[0]))
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files
    # another parameter or another mesh is another key
    decompose_many([job], ACDParams(threshold=0.1, split_pieces=False), cache_dir=tmp_path, workers=0)
    moved = ACDJob("moved", vertices + 1.0, faces)
    decompose_many([moved], WHOLE, cache_dir=tmp_path, workers=0)
    assert counter.calls == 3
    assert cache_key(job, ACDParams()) != cache_key(job, ACDParams(resolution=999))


def test_cache_round_trip_and_unreadable_entry(tmp_path):
    vertices, faces, _ = two_boxes()
    cache = ACDCache(tmp_path)
    d = Decomposition([(vertices[:8], faces[:12]), (vertices[8:], faces[12:] - 8)], "coacd")
    cache.save("ab" * 32, d)
    back = cache.load("ab" * 32)
    assert back.method == "coacd" and len(back) == 2
    np.testing.assert_array_equal(back.hulls[1][0], vertices[8:])
    cache.save("cd" * 32, Decomposition([], "fallback:single (x)"))
    assert len(cache.load("cd" * 32)) == 0
    cache.path("ef" * 32).parent.mkdir(parents=True)
    cache.path("ef" * 32).write_bytes(b"garbage")
    assert cache.load("ef" * 32) is None  # ignored with a warning, recomputed by the caller


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('x')",))


def _damage(path, how, marker):
    import io
    import pickle

    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped":  # one byte of the vertex data: same size, headers intact, CRC-32 differs
        with np.load(path) as z:
            first = z["vertices"].tobytes()[:8]
        data[data.index(first) + 3] ^= 0xFF
    elif how == "counts":  # a valid zip whose arrays do not fit together
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["vertex_counts"] = arrays["vertex_counts"] + 1
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = bytearray(buf.getvalue())
    else:  # a pickle that would run code, in place of the entry
        data = bytearray(pickle.dumps(_RunsCode(marker)))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "flipped", "counts", "pickle"])
def test_damaged_cache_entry_is_named_and_recomputed(tmp_path, monkeypatch, caplog, how):
    counter = _CountingCoacd(decompose_module.run_coacd)
    monkeypatch.setattr(decompose_module, "run_coacd", counter)
    vertices, faces, _ = two_boxes()
    job = ACDJob("two boxes", vertices, faces)
    (first,), _ = decompose_many([job], WHOLE, cache_dir=tmp_path, workers=0, progress=False)
    entry = ACDCache(tmp_path).path(cache_key(job, WHOLE))
    marker = tmp_path / "pwned"
    _damage(entry, how, marker)
    (again,), stats = decompose_many([job], WHOLE, cache_dir=tmp_path, workers=0, progress=False)
    assert f"ignoring unreadable ACD cache entry {entry}" in caplog.text and "recomputing" in caplog.text
    assert counter.calls == 2 and stats.computed == 1 and stats.cached == 0 and not marker.exists()
    assert len(again) == len(first) and ACDCache(tmp_path).load(cache_key(job, WHOLE)) is not None  # repaired


def test_timeout_falls_back_to_connected_components(tmp_path, caplog):
    vertices, faces, labels = two_boxes()
    # 1 ms: the worker process cannot even start CoACD in time, so it is killed and replaced.
    result, stats = decompose_many(
        [ACDJob("slow mesh", vertices, faces)],
        WHOLE,
        cache_dir=tmp_path,
        workers=1,
        timeout_s=0.001,
        progress=False,
    )
    (d,) = result
    assert d.is_fallback and "connected_components" in d.method and "timed out" in d.method
    assert stats.fallbacks == ["slow mesh"] and "slow mesh" in caplog.text
    assert len(d) == 2  # one hull per box
    points, _, face_index = sample_points(vertices, faces, 400, seed=3)
    assert _same_partition(assign_points(points.numpy(), d), labels[face_index.numpy()])
    # the fallback is cached and reported as such when reused
    again, stats2 = decompose_many(
        [ACDJob("slow mesh", vertices, faces)], WHOLE, cache_dir=tmp_path, workers=1
    )
    assert again[0].is_fallback and stats2.cached == 1 and stats2.fallbacks == ["slow mesh"]


def test_errors_fall_back_and_single_fallback(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(decompose_module, "run_coacd", broken)
    vertices, faces, _ = two_boxes()
    (d,), stats = decompose_many(
        [ACDJob("m", vertices, faces)], WHOLE, cache_dir=None, workers=0, fallback="single"
    )
    assert d.method.startswith("fallback:single") and "boom" in d.method and len(d) == 1
    assert stats.fallbacks == ["m"]
    # a point cloud (no faces) can only fall back to one component
    cloud = fallback_decomposition(ACDJob("pc", vertices, None), "connected_components", "x")
    assert cloud.method.startswith("fallback:single") and len(cloud) == 1
    with pytest.raises(ValueError, match="fallback"):
        decompose_many([], fallback="nope")


def test_convex_pieces_skip_coacd(monkeypatch):
    counter = _CountingCoacd(decompose_module.run_coacd)
    monkeypatch.setattr(decompose_module, "run_coacd", counter)
    vertices, faces, labels = two_boxes()
    d = decompose(ACDJob("two boxes", vertices, faces), ACDParams())
    assert counter.calls == 0 and len(d) == 2 and d.method == "coacd per piece (2 pieces, 2 convex)"
    points, _, face_index = sample_points(vertices, faces, 300, seed=5)
    np.testing.assert_array_equal(assign_points(points.numpy(), d), labels[face_index.numpy()])
    # a box plus a half torus: only the (non-convex) torus goes to CoACD
    tv, tf = tube(arc((3.0, 0.0, 0.0), 0.5, 0.0, np.pi, steps=16), 0.1, segments=12)
    mixed = ACDJob("box + handle", np.concatenate([vertices[:8], tv]), np.concatenate([faces[:12], tf + 8]))
    d = decompose(mixed, ACDParams())
    assert counter.calls == 1 and d.method == "coacd per piece (2 pieces, 1 convex)" and len(d) >= 3
    # one piece, or more than max_pieces: CoACD on the whole mesh
    decompose(ACDJob("cube", vertices[:8], faces[:12]), ACDParams())
    decompose(ACDJob("two boxes", vertices, faces), ACDParams(max_pieces=1))
    assert counter.calls == 3


def test_convex_piece_hull_detects_closed_convex_solids():
    v, f = box((0, 0, 0), (1.0, 2.0, 3.0))
    hv, hf = convex_piece_hull(v, f)
    assert signed_volume(hv, hf) == pytest.approx(6.0)  # hull faces wound outwards
    tv, tf = tube(arc((0, 0, 0), 1.0, 0, np.pi, steps=16), 0.1)
    assert convex_piece_hull(tv, tf) is None  # closed, not convex
    cv, cf = tube(np.array([[0, 0, 0], [0, 0, 1.0]]), [0.5, 0.3], cap_start=False)
    assert convex_piece_hull(cv, cf) is None  # convex shape, but open


def test_connected_components_merge_duplicated_vertices():
    # the same cube with every face owning its own vertices (as texture seams produce) is one piece
    v, f = box((0, 0, 0), (1, 1, 1))
    split_v = v[f.ravel()]
    split_f = np.arange(len(split_v)).reshape(-1, 3)
    d = fallback_decomposition(ACDJob("seams", split_v, split_f), "connected_components", "test")
    assert len(d) == 1


@pytest.mark.slow
def test_parallel_workers_and_point_cloud_reconstruction(tmp_path):
    """Real CoACD in two worker processes, and ACD of a point cloud through ball pivoting."""
    vertices, faces, labels = two_boxes()
    jobs = [ACDJob(f"m{i}", vertices + i, faces) for i in range(3)]
    result, stats = decompose_many(jobs, WHOLE, cache_dir=tmp_path, workers=2, timeout_s=120, progress=False)
    assert stats.computed == 3 and not stats.fallbacks and all(len(d) == 2 for d in result)
    points, normals, face_index = sample_points(vertices, faces, 3000, seed=4)
    cloud_job = ACDJob("cloud", points.numpy(), None, normals.numpy())
    params = ACDParams(threshold=0.2)  # the shapenetpart default for reconstructed surfaces
    (d,), _ = decompose_many(
        [cloud_job], params, cache_dir=tmp_path, workers=1, timeout_s=120, progress=False
    )
    assert d.method == "ball_pivoting+coacd" and len(d) >= 2
    got = assign_points(points.numpy(), d)
    # each box's points are dominated by components that the other box does not use
    for part in (0, 1):
        mine = got[labels[face_index.numpy()] == part]
        other = set(got[labels[face_index.numpy()] != part].tolist())
        assert np.isin(mine, list(other)).mean() < 0.05


def test_precompute_cli_fills_the_cache_the_builder_reads(tmp_path, capsys):
    from mmssl.modalities.pointcloud.data import procedural_parts
    from tests.data_tool import load_data_tool

    module = load_data_tool("precompute_acd")
    options = [
        "--categories",
        "Laptop",
        "--train-per-category",
        "1",
        "--cache-dir",
        str(tmp_path),
        "--workers",
        "0",
    ]
    assert module.main(["procedural", *options]) == 0
    assert "computed: 1" in capsys.readouterr().out
    bundle = procedural_parts(
        categories=["Laptop"],
        train_per_category=1,
        test_per_category=2,
        num_points=128,
        cache_dir=str(tmp_path),
    )
    assert bundle.stats["acd_cached"] == 1 and bundle.stats["acd_computed"] == 0
    with pytest.raises(SystemExit, match="--root is required"):
        module.main(["mesh_folder"])


def test_precompute_point_folder_fills_the_cache_the_builder_reads(tmp_path, capsys):
    """precompute_acd.py point_folder decomposes with the point-cloud defaults (surface reconstructed
    first), under the keys a point_folder recipe looks up."""
    from mmssl.modalities.pointcloud.data import point_folder
    from mmssl.modalities.pointcloud.io import write_points
    from tests.data_tool import load_data_tool
    from tests.pointcloud.test_point_folder import two_boxes

    module = load_data_tool("precompute_acd")
    (tmp_path / "clouds").mkdir()
    write_points(tmp_path / "clouds" / "boxes.xyz", two_boxes(1.0, 300, 0)[0])
    common = ["--root", str(tmp_path / "clouds"), "--cache-dir", str(tmp_path), "--workers", "0"]
    assert module.main(["point_folder", *common]) == 0
    assert "computed: 1" in capsys.readouterr().out
    bundle = point_folder(root=str(tmp_path / "clouds"), num_points=64, cache_dir=str(tmp_path))
    assert bundle.stats["acd_cached"] == 1 and bundle.stats["acd_computed"] == 0
    with pytest.raises(SystemExit, match="--whole-meshes does not apply to point_folder"):
        module.main(["point_folder", *common, "--whole-meshes"])
