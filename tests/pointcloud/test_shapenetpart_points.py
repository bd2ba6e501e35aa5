"""The real ShapeNetPart shapes of ../shared/data/3d/shapenetpart_points: its split files (10 train = the
10-shot pool, 3 val, 3 test per category) read as the part-segmentation support / scored splits, and
procedural pretraining evaluated on them (``procedural_parts`` with ``eval_on``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmssl.config import ConfigError
from mmssl.data.keys import INPUT, LABEL
from mmssl.modalities.pointcloud.acd.options import MeshACDOptions, PointCloudACDOptions
from mmssl.modalities.pointcloud.partseg.splits import draw_support, load_split
from mmssl.modalities.pointcloud.partseg_sets import ShapeNetPartEval, shapenetpart_splits
from mmssl.modalities.pointcloud.shapenetpart import SHAPENETPART_PARTS
from mmssl.modalities.pointcloud.taxonomy import PartTaxonomy
from mmssl.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "3d" / "shapenetpart_points"
CATEGORIES = ["Airplane", "Car", "Chair", "Guitar", "Lamp", "Laptop", "Mug", "Table"]

pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"shapenetpart_points not found: {ROOT}")


def _listed(split: str) -> list[str]:
    """``<synset>/<id>`` entries of a split file, read independently of the library."""
    entries = json.loads((ROOT / "train_test_split" / f"shuffled_{split}_file_list.json").read_text())
    return ["/".join(e.split("/")[-2:]) for e in entries]


def _entries(dataset) -> list[str]:
    return [f"{p.parent.name}/{p.stem}" for p in dataset.base.paths]


def test_support_is_the_10_shot_pool_and_scored_the_test_lists() -> None:
    splits = shapenetpart_splits(ShapeNetPartEval(str(ROOT), num_points=224, categories=CATEGORIES), seed=0)
    support, scored = splits.eval_train, splits.eval_test
    assert sorted(_entries(support)) == sorted(_listed("train"))
    assert sorted(_entries(scored)) == sorted(_listed("test"))
    assert set(_entries(support)).isdisjoint(_entries(scored))
    assert len(support) == 80 and len(scored) == 24
    for ds, per_category in ((support, 10), (scored, 3)):
        counts = torch.bincount(torch.tensor(ds.targets), minlength=8)
        assert counts.tolist() == [per_category] * 8
    assert splits.taxonomy == PartTaxonomy(
        CATEGORIES, {i: SHAPENETPART_PARTS[c] for i, c in enumerate(CATEGORIES)}, 50
    )
    assert splits.stats["split_missing"] == 0 and splits.stats["split_in_several_splits"] == 0
    item = scored[0]
    assert item["points"].shape == (224, 3) and item["parts"].shape == (224,)
    assert set(item["parts"].tolist()) <= set(SHAPENETPART_PARTS[CATEGORIES[item["category"]]])
    assert torch.equal(item[INPUT], item["points"]) and item[LABEL] == item["category"]
    # the 10-shot draw of the part-segmentation evaluator takes the whole pool, whatever the seed
    stacked = load_split(support)
    for seed in (0, 1):
        assert sorted(draw_support(stacked["category"], 10, seed, CATEGORIES).tolist()) == list(range(80))


def test_val_for_tuning_and_overlaps_refused() -> None:
    val = shapenetpart_splits(
        ShapeNetPartEval(str(ROOT), num_points=64, categories=CATEGORIES, score_split="val"), seed=0
    )
    assert sorted(_entries(val.eval_test)) == sorted(_listed("val"))
    with pytest.raises(ValueError, match="val shapes"):
        ShapeNetPartEval(str(ROOT), support_split="trainval", score_split="val")
    with pytest.raises(ValueError, match="score_split"):
        ShapeNetPartEval(str(ROOT), score_split="train")


def test_procedural_pretraining_scored_on_real_shapes() -> None:
    bundle = DATASETS.get("procedural_parts")(
        categories=["Chair", "Mug"],
        train_per_category=2,
        test_per_category=1,
        num_points=64,
        acd=MeshACDOptions(enabled=False),
        eval_on=ShapeNetPartEval(str(ROOT), num_points=64, categories=CATEGORIES),
    )
    assert len(bundle.pretrain) == 4  # the built-in shapes
    assert len(bundle.eval_train) == 80 and len(bundle.eval_test) == 24 and bundle.num_classes == 8
    assert bundle.extra(PartTaxonomy, "test").categories == CATEGORIES
    assert bundle.stats["num_pretrain"] == 4 and bundle.stats["score_split"] == "test"


def test_shapenetpart_builder_support_and_score_splits() -> None:
    builder = DATASETS.get("shapenetpart")
    common = dict(
        root=str(ROOT), num_points=64, categories=CATEGORIES, acd=PointCloudACDOptions(enabled=False)
    )
    bundle = builder(**common, support_split="train")
    assert len(bundle.pretrain) == 104  # train + val, labels withheld
    assert len(bundle.eval_train) == 80 and len(bundle.eval_test) == 24
    assert sorted(_entries(bundle.eval_train)) == sorted(_listed("train"))
    default = builder(**common)  # trainval support, as before
    assert len(default.eval_train) == 104 and sorted(_entries(default.eval_test)) == sorted(_listed("test"))
    with pytest.raises(ConfigError, match="val shapes"):
        builder(**common, score_split="val")


def test_unlabelled_point_folder_scored_on_real_shapes() -> None:
    """Pretrain on a folder of unlabelled clouds (here one category's files, read as plain x y z nx ny nz
    rows: the part column is past the six that ``read_points`` keeps), score on the real splits."""
    mugs = ROOT / "03797390"
    bundle = DATASETS.get("point_folder")(
        root=str(mugs),
        num_points=64,
        acd=PointCloudACDOptions(enabled=False),
        eval_on=ShapeNetPartEval(str(ROOT), num_points=64, categories=CATEGORIES),
    )
    assert len(bundle.pretrain) == len(list(mugs.glob("*.txt"))) == 16
    assert len(bundle.eval_train) == 80 and len(bundle.eval_test) == 24 and bundle.num_classes == 8
    assert bundle.extra(PartTaxonomy, "test").categories == CATEGORIES
    assert bundle.stats["num_shapes"] == 16 and bundle.stats["eval_bad_files"] == []
    # the drawn points carry the file's own normals: each is one of the file's rows
    rows = torch.from_numpy(np.loadtxt(sorted(mugs.glob("*.txt"))[0], dtype=np.float32))
    item = bundle.pretrain[0]
    difference = (item["normals"][:, None] - rows[None, :, 3:6]).abs().amax(dim=-1)
    assert (difference.min(dim=1).values < 1e-6).all()
    assert item["points"].norm(dim=1).max().item() == pytest.approx(1.0, rel=1e-5)
