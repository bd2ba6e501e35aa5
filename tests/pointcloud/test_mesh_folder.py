"""The ``mesh_folder`` builder: every readable mesh of a folder, bad files raised or skipped, ACD labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmssl.errors import CorruptFileError
from mmssl.modalities.pointcloud.acd.options import MeshACDOptions
from mmssl.modalities.pointcloud.io import write_mesh
from mmssl.modalities.pointcloud.procedural import box
from mmssl.registry import DATASETS


@pytest.fixture
def folder(tmp_path):
    v1, f1 = box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    v2, f2 = box((1.5, 0.0, 0.0), (0.5, 2.0, 0.5))
    write_mesh(tmp_path / "a_two_boxes.obj", np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)]))
    (tmp_path / "b_garbage.obj").write_text("this is not a mesh\n")
    flat = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]])  # one degenerate triangle: zero area
    write_mesh(tmp_path / "c_flat.off", flat, np.array([[0, 1, 2]]))
    return tmp_path


def test_bad_meshes_raise_or_are_skipped_and_counted(folder, tmp_path) -> None:
    build = DATASETS.get("mesh_folder")
    with pytest.raises(CorruptFileError, match="b_garbage"):
        build(root=str(folder), num_points=64, acd=MeshACDOptions(enabled=False))
    bundle = build(
        root=str(folder), num_points=64, skip_bad=True, acd=MeshACDOptions(workers=0), cache_dir=str(tmp_path)
    )
    assert len(bundle.pretrain) == 1 and bundle.stats["skipped_files"] == 2
    assert bundle.stats["num_shapes"] == 1 and bundle.stats["acd_computed"] == 1
    item = bundle.pretrain[0]
    assert item["points"].shape == (64, 3) and item["normals"].shape == (64, 3)
    assert item["points"].norm(dim=1).max().item() == pytest.approx(1.0, rel=1e-5)
    # two convex boxes, apart along x: one component each, split where the gap between them is
    x = np.sort(item["points"][:, 0].numpy())
    gap = int(np.diff(x).argmax())
    cut = (x[gap] + x[gap + 1]) / 2
    left, right = item["acd"][item["points"][:, 0] < cut], item["acd"][item["points"][:, 0] > cut]
    assert len(left.unique()) == len(right.unique()) == 1 and left[0] != right[0]
    # the same files and seed give the same points
    again = build(root=str(folder), num_points=64, skip_bad=True, acd=MeshACDOptions(enabled=False))
    assert torch.equal(again.pretrain[0]["points"], item["points"]) and (again.pretrain[0]["acd"] == -1).all()
