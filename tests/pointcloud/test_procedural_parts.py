"""Procedural part-annotated shapes and the ``procedural_parts`` builder."""

import numpy as np
import pytest
import torch

from mmssl.errors import ConfigError, DataError
from mmssl.modalities.pointcloud.acd.options import MeshACDOptions
from mmssl.modalities.pointcloud.io import face_normals_and_areas
from mmssl.modalities.pointcloud.procedural import (
    DEFAULT_CATEGORIES,
    PROCEDURAL_CATEGORIES,
    arc,
    box,
    cylinder,
    procedural_shape,
    procedural_split,
    tube,
)
from mmssl.modalities.pointcloud.shapenetpart import SHAPENETPART_PARTS
from mmssl.modalities.pointcloud.taxonomy import PartTaxonomy
from mmssl.options import builder_options
from mmssl.registry import DATASETS

NO_ACD = MeshACDOptions(enabled=False)


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    """Divergence theorem: positive for a closed surface whose triangles face outwards."""
    v = v.astype(np.float64)
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6)


def test_primitives_are_closed_and_face_outwards():
    v, f = box((1, 2, 3), (1.0, 2.0, 3.0))
    assert _signed_volume(v, f) == pytest.approx(6.0)
    n = 64
    v, f = cylinder((0, 0, 0), (0, 0, 2), 0.5, segments=n)
    # a regular n-gon prism: area n/2 r^2 sin(2 pi / n) times the height
    assert _signed_volume(v, f) == pytest.approx(n / 2 * 0.25 * np.sin(2 * np.pi / n) * 2)
    v, f = cylinder((0, 0, 0), (0, 1, 0), 0.5, 0.0, segments=n)  # cone
    assert _signed_volume(v, f) == pytest.approx(n / 2 * 0.25 * np.sin(2 * np.pi / n) / 3)
    v, f = tube(arc((0, 0, 0), 1.0, 0, np.pi, steps=40), 0.05, segments=32)  # half torus
    assert _signed_volume(v, f) == pytest.approx(np.pi * 0.05**2 * np.pi, rel=0.02)


@pytest.mark.parametrize("category", PROCEDURAL_CATEGORIES)
def test_shapes_cover_their_category_parts(category):
    meshes = procedural_split([category], 20, "train", seed=0)
    expected = set(SHAPENETPART_PARTS[category])
    seen = set()
    for m in meshes:
        labels = set(m.face_labels.tolist())
        assert labels <= expected and len(labels) >= 2
        seen |= labels
        assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int64
        assert len(m.face_labels) == len(m.faces) and m.faces.max() < len(m.vertices)
        _, areas = face_normals_and_areas(m.vertices, m.faces)
        assert (areas > 0).all() and _signed_volume(m.vertices, m.faces) > 0
    assert seen == expected  # every part id of the category occurs
    extents = np.array([np.ptp(m.vertices, axis=0) for m in meshes])
    assert (extents.std(0) > 0.01).all()  # proportions vary between shapes


def test_shapes_are_seeded_and_splits_differ():
    a = procedural_shape("Chair", 3, "train", seed=0)
    b = procedural_shape("Chair", 3, "train", seed=0)
    c = procedural_shape("Chair", 3, "test", seed=0)
    d = procedural_shape("Chair", 3, "train", seed=1)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert not np.array_equal(a.vertices, c.vertices) or a.vertices.shape != c.vertices.shape
    assert not np.array_equal(a.vertices, d.vertices) or a.vertices.shape != d.vertices.shape
    # a shape does not depend on how many others are drawn
    np.testing.assert_array_equal(procedural_split(["Chair"], 5)[3].vertices, a.vertices)


def test_builder_items_and_info(tmp_path):
    bundle = DATASETS.get("procedural_parts")(
        categories=["Chair", "Mug"], train_per_category=3, test_per_category=2, num_points=256, acd=NO_ACD
    )
    assert DATASETS.modality_of("procedural_parts") == "pointcloud"
    assert len(bundle.pretrain) == 6 and len(bundle.eval_train) == 6 and len(bundle.eval_test) == 4
    assert bundle.num_classes == 2
    taxonomy = bundle.extra(PartTaxonomy, needed_by="test")
    assert taxonomy == PartTaxonomy(
        categories=["Chair", "Mug"],
        parts_per_category={0: [12, 13, 14, 15], 1: [36, 37]},
        num_parts=50,
    )
    item = bundle.pretrain[4]
    assert set(item) == {"points", "normals", "acd", "index"} and item["index"] == 4
    assert item["points"].shape == (256, 3) and item["points"].dtype == torch.float32
    assert item["normals"].shape == (256, 3) and item["acd"].dtype == torch.int64
    assert (item["acd"] == -1).all()  # acd=False: unknown
    for ds in (bundle.eval_train, bundle.eval_test):
        assert ds.targets == [0] * (len(ds) // 2) + [1] * (len(ds) // 2)
        for i in range(len(ds)):
            it = ds[i]
            assert it["parts"].shape == (256,) and it["parts"].dtype == torch.int64 and it["index"] == i
            cat = taxonomy.categories[it["category"]]
            assert set(it["parts"].tolist()) <= set(SHAPENETPART_PARTS[cat])
            assert it["points"].norm(dim=1).max().item() == pytest.approx(1.0, rel=1e-5)
            assert it["points"].mean(0).abs().max().item() < 1e-5
            assert torch.allclose(it["normals"].norm(dim=1), torch.ones(256), atol=1e-5)
            assert it["label"] == it["category"] and torch.equal(it["input"], it["points"])
    # pretraining shapes are the labelled training shapes
    assert torch.equal(bundle.pretrain[1]["points"], bundle.eval_train[1]["points"])


def test_builder_with_acd_labels(tmp_path):
    builder = DATASETS.get("procedural_parts")
    bundle = builder(
        categories=["Table"],
        train_per_category=1,
        test_per_category=1,
        num_points=512,
        cache_dir=str(tmp_path),
        acd=MeshACDOptions(workers=0),
    )
    acd_labels = bundle.pretrain[0]["acd"]
    parts = bundle.eval_train[0]["parts"]
    assert (acd_labels >= 0).all() and len(acd_labels.unique()) >= 2
    # a table's top and its legs are never one convex component
    top, legs = acd_labels[parts == 47], acd_labels[parts == 48]
    assert top.mode().values != legs.mode().values
    assert bundle.stats["acd_computed"] == 1 and list(tmp_path.glob("acd/*/*.npz"))


def test_builder_rejects_bad_options():
    with pytest.raises(DataError, match="Spaceship"):
        DATASETS.get("procedural_parts")(categories=["Spaceship"], acd=NO_ACD)
    with pytest.raises(ConfigError, match="fallback"):
        builder_options(
            DATASETS.get("procedural_parts"), {"acd": {"fallback": "nope"}}, "data", kind="dataset", name="p"
        )
    assert set(DEFAULT_CATEGORIES) <= set(PROCEDURAL_CATEGORIES)
