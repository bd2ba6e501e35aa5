"""The ``point_folder`` builder: every readable point cloud of a folder, bad files raised or skipped,
normals estimated where a file has none, ACD labels through surface reconstruction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.pointcloud.acd.options import PointCloudACDOptions
from mmssl.modalities.pointcloud.io import (
    estimate_normals,
    read_point_file,
    read_points,
    sample_points,
    write_points,
)
from mmssl.modalities.pointcloud.procedural import box
from mmssl.registry import DATASETS


def two_boxes(gap: float, num_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and normals on the surfaces of two boxes ``gap`` apart along x (two convex parts)."""
    v1, f1 = box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    v2, f2 = box((1.0 + gap, 0.0, 0.0), (0.5, 2.0, 0.5))
    points, normals, _ = sample_points(
        np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)]), num_points, np.random.default_rng(seed)
    )
    return points.numpy(), normals.numpy()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "clouds"
    root.mkdir()
    points, normals = two_boxes(1.0, 400, 0)
    write_points(root / "a_with_normals.ply", points, normals)
    write_points(root / "nested" / "b_without_normals.xyz", *two_boxes(1.5, 400, 1)[:1])
    (root / "c_garbage.xyz").write_text("1 2 3\nnot numbers at all\n")
    (root / "d_cut.txt").write_text("0 0 0\n1 1 1\n2 2")  # cut mid-row
    return root


def _split_by_gap(item: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The ACD labels of the points left and right of the widest gap along x."""
    x = np.sort(item["points"][:, 0].numpy())
    gap = int(np.diff(x).argmax())
    cut = (x[gap] + x[gap + 1]) / 2
    return item["acd"][item["points"][:, 0] < cut], item["acd"][item["points"][:, 0] > cut]


def test_bad_clouds_raise_or_are_skipped_and_every_good_one_gets_two_acd_parts(folder, tmp_path) -> None:
    build = DATASETS.get("point_folder")
    with pytest.raises(CorruptFileError, match="c_garbage"):
        build(root=str(folder), num_points=64, acd=PointCloudACDOptions(enabled=False))
    bundle = build(
        root=str(folder),
        num_points=64,
        skip_bad=True,
        acd=PointCloudACDOptions(workers=0),
        cache_dir=str(tmp_path),
    )
    assert bundle.name == "point_folder" and len(bundle.pretrain) == 2
    assert bundle.stats["skipped_files"] == 2 and bundle.stats["acd_computed"] == 2
    assert [p.rsplit("/", 1)[1] for p in bundle.stats["bad_files"]] == ["c_garbage.xyz", "d_cut.txt"]
    for index in range(2):
        item = bundle.pretrain[index]
        assert item["points"].shape == item["normals"].shape == (64, 3) and item["index"] == index
        assert item["points"].norm(dim=1).max().item() == pytest.approx(1.0, rel=1e-5)
        assert torch.allclose(item["normals"].norm(dim=1), torch.ones(64), atol=1e-4)
        # the two boxes are separate convex parts: no component spans the gap between them (the thin box
        # reconstructed from estimated normals may itself be cut in two at the 0.2 threshold)
        left, right = _split_by_gap(item)
        assert set(left.tolist()).isdisjoint(right.tolist())
        assert len(left.unique()) == 1  # the cube, reconstructed from its own normals or estimated ones
    # the file's own normals are kept: those of a box's points are axis-aligned (estimated ones are not)
    xyz, normals = read_point_file(folder / "a_with_normals.ply")
    assert normals is not None
    assert torch.allclose(bundle.pretrain[0]["normals"].abs().amax(dim=1), torch.ones(64), atol=1e-5)
    # the same files and seed give the same points; ACD off gives -1 labels
    again = build(root=str(folder), num_points=64, skip_bad=True, acd=PointCloudACDOptions(enabled=False))
    assert torch.equal(again.pretrain[0]["points"], bundle.pretrain[0]["points"])
    assert (again.pretrain[0]["acd"] == -1).all()
    other_seed = build(
        root=str(folder), num_points=64, seed=1, skip_bad=True, acd=PointCloudACDOptions(enabled=False)
    )
    assert not torch.equal(other_seed.pretrain[0]["points"], bundle.pretrain[0]["points"])


def test_estimated_normals_are_perpendicular_to_the_surface() -> None:
    """On a sphere the true normal is the radial direction: the estimate must be parallel to it (the sign
    of an estimate is arbitrary, but consistent over the cloud)."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(800, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    normals = estimate_normals(points)
    cosine = np.sum(normals * points, axis=1)
    assert np.abs(cosine).min() > 0.9
    assert (np.sign(cosine) == np.sign(np.median(cosine))).mean() > 0.95  # one orientation


def test_points_read_from_bytes_as_from_the_file(folder) -> None:
    for name in ("a_with_normals.ply", "nested/b_without_normals.xyz"):
        path = folder / name
        from_bytes = read_points(f"shard-000000.tar:000000001{path.suffix}", data=path.read_bytes())
        assert torch.equal(from_bytes, read_points(path))
    with pytest.raises(CorruptFileError, match=r"shard-000000.tar:000000003.txt.*truncated"):
        read_points("shard-000000.tar:000000003.txt", data=(folder / "d_cut.txt").read_bytes())


def test_an_empty_folder_and_a_missing_one_are_named(tmp_path) -> None:
    build = DATASETS.get("point_folder")
    with pytest.raises(DataError, match="point_folder root not found"):
        build(root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"point_folder: no files with extensions \.ply"):
        build(root=str(tmp_path / "empty"))


def test_flat_clouds_comments_headers_and_colour_columns(tmp_path) -> None:
    """What real scans hold: a flat cloud without normals (orientation cannot be solved: PCA normals are
    kept, still perpendicular to the plane), comment and header lines, colours where normals could be."""
    rng = np.random.default_rng(0)
    flat = np.c_[rng.uniform(size=(200, 2)), np.zeros(200)]
    write_points(tmp_path / "flat.xyz", flat)
    rows = "\n".join(" ".join(f"{v:.6f}" for v in p) for p in two_boxes(1.0, 200, 0)[0])
    (tmp_path / "commented.xyz").write_text(f"\ufeffX Y Z\n# exported by a scanner\n{rows}\n// end\n")
    coloured = np.c_[two_boxes(1.0, 200, 1)[0], rng.integers(0, 255, (200, 3))]
    np.savetxt(tmp_path / "coloured.txt", coloured, header="x y z r g b")  # '# x y z r g b'
    bundle = DATASETS.get("point_folder")(
        root=str(tmp_path), num_points=64, acd=PointCloudACDOptions(enabled=False)
    )
    assert bundle.stats["num_shapes"] == 3
    by_name = dict(zip(("coloured", "commented", "flat"), (bundle.pretrain[i] for i in range(3))))
    assert torch.allclose(by_name["flat"]["normals"][:, 2].abs(), torch.ones(64), atol=1e-4)
    assert len(read_points(tmp_path / "commented.xyz")) == 200
    assert read_point_file(tmp_path / "coloured.txt")[1] is None  # colours are not normals
    assert torch.allclose(by_name["coloured"]["normals"].norm(dim=1), torch.ones(64), atol=1e-4)
    (tmp_path / "late_garbage.xyz").write_text(f"{rows}\nnot a point\n")
    with pytest.raises(CorruptFileError, match=r"late_garbage.xyz .*line 201 is not numbers"):
        read_points(tmp_path / "late_garbage.xyz")


def test_part_segmentation_needs_eval_on(tmp_path) -> None:
    """Without eval_on a folder has no labelled splits: a recipe that scores part segmentation on it is
    refused when it loads, not after pretraining."""
    from mmssl.config import ConfigError, load_recipe

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "pointcloud" / "acd_10shot.yaml"
    for name in ("point_folder", "mesh_folder"):
        with pytest.raises(ConfigError, match="part_segmentation"):
            load_recipe(recipe, [f"data={{name: {name}, root: {tmp_path}}}"])
    load_recipe(recipe, [f"data={{name: point_folder, root: {tmp_path}}}", "eval={}"])
