"""The ``acd:`` recipe section of the point-cloud datasets: checked as one object, per-builder defaults,
and its values reach the decomposition (its cache key)."""

from __future__ import annotations

import numpy as np
import pytest

from mmssl.config import from_dict
from mmssl.errors import ConfigError
from mmssl.modalities.pointcloud.acd.cache import cache_key
from mmssl.modalities.pointcloud.acd.job import ACDJob
from mmssl.modalities.pointcloud.acd.options import (
    MESH_ACD_DEFAULTS,
    POINT_CLOUD_ACD_DEFAULTS,
    MeshACDOptions,
    PointCloudACDOptions,
)
from mmssl.modalities.pointcloud.acd.params import ACDParams
from mmssl.modalities.pointcloud.acd_labels import acd_cache_dir
from mmssl.modalities.pointcloud.procedural import procedural_shape
from mmssl.options import builder_options
from mmssl.pipeline import build_data
from mmssl.registry import DATASETS


def _recipe(**data) -> dict:
    return {
        "name": "t",
        "modality": "pointcloud",
        "method": {"name": "acd"},
        "encoder": {"name": "dgcnn"},
        "data": {"name": "procedural_parts", **data},
    }


def _options(dataset: str, options: dict) -> dict:
    return builder_options(DATASETS.get(dataset), options, "data", kind="dataset", name=dataset)


def test_a_misspelt_acd_key_names_its_dotted_path_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'data\.acd\.treshold'.*did you mean 'threshold'"):
        from_dict(_recipe(acd={"treshold": 0.1}))
    with pytest.raises(ConfigError, match=r"'data\.acd\.workers' expects int"):
        from_dict(_recipe(acd={"workers": "two"}))
    with pytest.raises(ConfigError, match=r"'data\.acd'.*preprocess_mode"):
        from_dict(_recipe(acd={"preprocess_mode": "sometimes"}))
    # a key of another builder's section: reconstruction is for point clouds, split_pieces for meshes
    with pytest.raises(ConfigError, match=r"data\.acd\.reconstruction"):
        from_dict(_recipe(acd={"reconstruction": "poisson"}))
    with pytest.raises(ConfigError, match=r"data\.acd\.split_pieces"):
        _options("shapenetpart", {"root": "x", "acd": {"split_pieces": False}})


def test_each_builder_keeps_its_own_defaults() -> None:
    # the flat acd_* keywords these replace defaulted to these values; meshes now get 180 s, measured on
    # real meshes (benchmarks/acd_real_meshes.py: the Stanford bunny takes 45 s on a quiet machine)
    for defaults, timeout in ((MESH_ACD_DEFAULTS, 180.0), (POINT_CLOUD_ACD_DEFAULTS, 60.0)):
        assert (defaults.enabled, defaults.workers, defaults.timeout_s, defaults.fallback) == (
            True,
            2,
            timeout,
            "connected_components",
        )
    assert MESH_ACD_DEFAULTS.params() == ACDParams()
    assert POINT_CLOUD_ACD_DEFAULTS.params() == ACDParams(threshold=0.2)
    # a partial section keeps the builder's defaults for the rest, with values converted to their types
    mesh = _options("procedural_parts", {"acd": {"workers": "0", "timeout_s": 5}})["acd"]
    assert mesh == MeshACDOptions(workers=0, timeout_s=5.0) and isinstance(mesh.timeout_s, float)
    assert mesh.params() == ACDParams()
    cloud = _options("shapenetpart", {"root": "x", "acd": {"reconstruction": "poisson"}})["acd"]
    assert cloud == PointCloudACDOptions(reconstruction="poisson")
    assert cloud.params() == ACDParams(threshold=0.2, reconstruction="poisson")
    whole = _options("mesh_folder", {"root": "x", "acd": {"split_pieces": False}})["acd"]
    assert whole.params() == ACDParams(split_pieces=False)


def test_a_nested_value_reaches_the_decomposition(tmp_path) -> None:
    data = {
        "categories": ["Laptop"],
        "train_per_category": 1,
        "test_per_category": 1,
        "num_points": 64,
        "cache_dir": str(tmp_path),
        "acd": {"threshold": 0.1, "workers": 0},
    }
    cfg = from_dict(_recipe(**data))
    bundle = build_data(cfg)
    assert bundle.stats["acd_computed"] == 1 and bundle.stats["acd_fallbacks"] == 0
    assert (bundle.pretrain[0]["acd"] >= 0).all()
    # the one decomposition is cached under the key of threshold 0.1, not under the default's
    mesh = procedural_shape("Laptop", 0, "train", seed=cfg.train.seed)
    job = ACDJob("laptop", mesh.vertices, mesh.faces)
    stored = [p.stem for p in acd_cache_dir(str(tmp_path)).glob("*/*.npz")]
    assert stored == [cache_key(job, ACDParams(threshold=0.1))]
    assert cache_key(job, ACDParams()) not in stored
    # the same section again: every decomposition is a cache hit
    again = build_data(cfg)
    assert again.stats["acd_cached"] == 1 and again.stats["acd_computed"] == 0
    np.testing.assert_array_equal(again.pretrain[0]["acd"].numpy(), bundle.pretrain[0]["acd"].numpy())
