"""ShapeNetPart layout: the category/part table, the real sample with its split quirks, bad files."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.pointcloud.shapenetpart import (
    NUM_PARTS,
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_PARTS,
    ShapeNetPart,
    check_splits,
    load_shape,
    part_id,
)

ROOT = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "3d"
    / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
)
SKATE, TABLE = "04225987", "04379243"
MISSING = f"{SKATE}/212e0563473156e255483301a044235"
TWICE = f"{SKATE}/1c8d5e05c3faa05861be5ced44bc18ac"
UNLISTED = f"{SKATE}/1ad8d7573dc57ebc247a956ed3779e34"
TABLE_ID = f"{TABLE}/1a2abbc9712e2fffc3bd24f986301745"


@pytest.fixture
def root():
    if not ROOT.is_dir():
        pytest.skip(f"ShapeNetPart sample not found: {ROOT}")
    return ROOT


def test_part_table_is_the_standard_one():
    # The table used by PointNet++ / DGCNN evaluation code, typed out independently.
    standard = {
        "Airplane": [0, 1, 2, 3], "Bag": [4, 5], "Cap": [6, 7], "Car": [8, 9, 10, 11],
        "Chair": [12, 13, 14, 15], "Earphone": [16, 17, 18], "Guitar": [19, 20, 21], "Knife": [22, 23],
        "Lamp": [24, 25, 26, 27], "Laptop": [28, 29], "Motorbike": [30, 31, 32, 33, 34, 35], "Mug": [36, 37],
        "Pistol": [38, 39, 40], "Rocket": [41, 42, 43], "Skateboard": [44, 45, 46], "Table": [47, 48, 49],
    }  # fmt: skip
    assert SHAPENETPART_PARTS == standard
    assert len(SHAPENETPART_CATEGORIES) == 16 and NUM_PARTS == 50
    assert sorted(p for ids in SHAPENETPART_PARTS.values() for p in ids) == list(range(50))
    assert (
        dict(SHAPENETPART_CATEGORIES)["Table"] == TABLE
        and dict(SHAPENETPART_CATEGORIES)["Skateboard"] == SKATE
    )
    assert part_id("Chair", "back") == 12 and part_id("Chair", "arm") == 15 and part_id("Table", "top") == 47


def test_real_rows_and_labels(root):
    xyz, normals, parts = load_shape(root / f"{TABLE_ID}.txt", "Table")
    assert xyz.shape == (2794, 3) and normals.shape == (2794, 3) and parts.shape == (2794,)
    assert set(parts.tolist()) == {47, 48, 49}  # README: labels {47,48,49}
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
    # the top (47) lies above the legs (48)
    assert xyz[parts == 47, 1].mean() > xyz[parts == 48, 1].mean()
    _, _, skate = load_shape(root / f"{TWICE}.txt", "Skateboard")
    assert len(skate) == 2475 and set(skate.tolist()) == {45}


def test_split_inconsistencies_reported_not_fatal(root, caplog):
    report = check_splits(root)
    assert report.counts() == {"missing": 3, "duplicates": 1, "in_several_splits": 2, "unlisted": 1}
    assert all(MISSING in m for m in report.missing)
    assert TWICE in report.duplicates[0] and UNLISTED in report.unlisted[0]
    with caplog.at_level(logging.WARNING):
        ds = ShapeNetPart(root, "trainval", num_points=1024)
    assert MISSING in caplog.text and "duplicates" in caplog.text
    # missing entry dropped, duplicate kept once, the unlisted file not used
    assert [str(p.relative_to(root).with_suffix("")) for p, _ in ds.samples] == [TWICE, TABLE_ID]
    assert ds.categories == ["Skateboard", "Table"] and ds.targets == [0, 1]
    # the val list names only the missing shape: a clear error, not a crash
    with pytest.raises(DataError, match="no readable ShapeNetPart shapes for split 'val'"):
        ShapeNetPart(root, "val", num_points=16, log_split_report=False)


def test_items_have_documented_shapes(root):
    ds = ShapeNetPart(root, "test", num_points=1024, log_split_report=False)
    for i in range(len(ds)):
        item = ds[i]
        assert item["points"].shape == (1024, 3) and item["points"].dtype == torch.float32
        assert item["normals"].shape == (1024, 3)
        assert item["parts"].dtype == torch.int64 and item["index"] == i
        cat = ds.categories[item["category"]]
        assert set(item["parts"].tolist()) <= set(SHAPENETPART_PARTS[cat])
        np.testing.assert_allclose(item["points"].norm(dim=1).max().item(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(item["points"].mean(0).numpy(), 0.0, atol=1e-5)
        assert torch.equal(ds[i]["points"], item["points"])  # deterministic per index
    # more points than rows: every row is used, the rest drawn with replacement
    big = ShapeNetPart(
        root, "test", num_points=4000, normalize=False, categories=["Table"], log_split_report=False
    )
    xyz_all, _, _ = load_shape(root / f"{TABLE_ID}.txt")
    pts = big[0]["points"].numpy()
    assert pts.shape == (4000, 3)
    assert len(np.unique(pts, axis=0)) == len(np.unique(xyz_all, axis=0))


def _fake_root(tmp_path: Path, rows: str, label_cat: str = "Table") -> Path:
    synset = dict(SHAPENETPART_CATEGORIES)[label_cat]
    (tmp_path / synset).mkdir()
    (tmp_path / "synsetoffset2category.txt").write_text(f"{label_cat}\t{synset}\n")
    (tmp_path / synset / "good.txt").write_text("0 0 0 0 1 0 47\n1 0 0 0 1 0 48\n0 1 0 0 1 0 49\n")
    (tmp_path / synset / "bad.txt").write_text(rows)
    split = tmp_path / "train_test_split"
    split.mkdir()
    entries = [f"shape_data/{synset}/bad", f"shape_data/{synset}/good"]
    for s in ("train", "val", "test"):
        (split / f"shuffled_{s}_file_list.json").write_text(json.dumps(entries if s == "train" else []))
    return tmp_path / synset / "bad.txt"


@pytest.mark.parametrize(
    "rows, reason",
    [
        ("", "no points"),
        ("0 0 0 0 1 0 47\nnan 0 0 0 1 0 47\n", "NaN"),
        ("0 0 0 0 1 0 12\n", "not Table parts"),
        ("0 0 0 47\n", "7 columns"),
    ],
)
def test_bad_files_raise_naming_the_file_or_are_skipped(tmp_path, rows, reason):
    bad = _fake_root(tmp_path, rows)
    ds = ShapeNetPart(tmp_path, "train", num_points=8)
    with pytest.raises(CorruptFileError, match=reason) as info:
        ds[0]
    assert info.value.path == bad and str(bad) in str(info.value)
    skipping = ShapeNetPart(tmp_path, "train", num_points=8, skip_bad=True)  # every file read once here
    assert skipping.num_skipped == 1 and skipping.bad_files == [bad]
    assert len(skipping) == 1 and skipping.paths == [bad.parent / "good.txt"]  # left out, not replaced
    item = skipping[0]
    assert set(item["parts"].tolist()) <= {47, 48, 49} and item["index"] == 0


def test_unknown_category_is_a_data_error(tmp_path):
    (tmp_path / "synsetoffset2category.txt").write_text("Spaceship\t99999999\n")
    with pytest.raises(DataError, match="Spaceship"):
        ShapeNetPart(tmp_path, "train")


def test_builder_bundle(root):
    from mmssl.modalities.pointcloud.acd.options import PointCloudACDOptions
    from mmssl.modalities.pointcloud.taxonomy import PartTaxonomy
    from mmssl.registry import DATASETS

    bundle = DATASETS.get("shapenetpart")(
        root=str(root), num_points=512, acd=PointCloudACDOptions(enabled=False)
    )
    kinds = ("missing", "duplicates", "in_several_splits", "unlisted")
    assert {kind: bundle.stats[f"split_{kind}"] for kind in kinds} == {
        "missing": 3,
        "duplicates": 1,
        "in_several_splits": 2,
        "unlisted": 1,
    }
    assert bundle.extra(PartTaxonomy, needed_by="test") == PartTaxonomy(
        categories=["Skateboard", "Table"],
        parts_per_category={0: [44, 45, 46], 1: [47, 48, 49]},
        num_parts=50,
    )
    item = bundle.pretrain[1]
    assert item["points"].shape == (512, 3) and (item["acd"] == -1).all()
    ev = bundle.eval_train[1]
    assert ev["category"] == 1 and ev["label"] == 1 and torch.equal(ev["input"], ev["points"])
    assert len(bundle.eval_train) == 2 and len(bundle.eval_test) == 2


def test_builder_skip_bad_leaves_bad_shapes_out_of_every_split_and_lists_them(tmp_path):
    from mmssl.modalities.pointcloud.acd.options import PointCloudACDOptions
    from mmssl.registry import DATASETS

    bad = _fake_root(tmp_path, "0 0 0 47\n")  # train: bad, good
    table = bad.parent
    (table / "good_test.txt").write_text("0 0 0 0 1 0 47\n1 0 0 0 1 0 48\n")
    (table / "bad_test.txt").write_text("0 0 0 0 1 0 12\n")  # a Chair part in a Table file
    split = tmp_path / "train_test_split" / "shuffled_test_file_list.json"
    split.write_text(json.dumps([f"shape_data/{TABLE}/bad_test", f"shape_data/{TABLE}/good_test"]))
    bundle = DATASETS.get("shapenetpart")(
        root=str(tmp_path), num_points=8, skip_bad=True, acd=PointCloudACDOptions(enabled=False)
    )
    assert bundle.stats["num_skipped"] == 2
    assert bundle.stats["bad_files"] == [str(bad), str(table / "bad_test.txt")]
    assert len(bundle.pretrain) == len(bundle.eval_train) == len(bundle.eval_test) == 1  # none replaced
