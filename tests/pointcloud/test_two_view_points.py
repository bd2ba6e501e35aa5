"""The shared two-view core on point clouds: SimCLR / MoCo / BYOL give the same loss on point tensors as on
images for identical embeddings, and the built-in shapes give ``views`` batches they train on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mmssl.config import ConfigError, load_recipe
from mmssl.core.losses import nt_xent
from mmssl.data.keys import VIEWS
from mmssl.modalities.pointcloud.acd.options import MeshACDOptions
from mmssl.modalities.pointcloud.views import PointViewOptions, two_view_transform
from mmssl.registry import DATASETS, ENCODERS, METHODS

N, SIDE = 64, 8  # 64 points = an 8 x 8 image with xyz as its 3 channels
NO_ACD = MeshACDOptions(enabled=False)


class FlatEncoder(nn.Module):
    """``global = MLP(flattened input)`` for points ``[B, N, 3]`` or images ``[B, 3, H, W]``: the image is
    flattened channel-last, so an image made of the same numbers gives the identical embedding."""

    out_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * N, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.permute(0, 2, 3, 1).reshape(len(x), -1) if x.dim() == 4 else x.reshape(len(x), -1)
        return {"global": self.net(flat)}


def as_images(points: torch.Tensor) -> torch.Tensor:
    """``[B, N, 3]`` -> ``[B, 3, 8, 8]`` holding the same numbers (channel = coordinate)."""
    return points.reshape(len(points), SIDE, SIDE, 3).permute(0, 3, 1, 2).contiguous()


def _point_views(b: int = 6) -> list[torch.Tensor]:
    """Two views of ``b`` built-in shapes, drawn by the point-cloud view transform."""
    bundle = DATASETS.get("procedural_parts")(
        categories=["Chair", "Mug"], train_per_category=3, test_per_category=1, num_points=N, acd=NO_ACD
    )
    transform = two_view_transform(PointViewOptions())
    torch.manual_seed(0)
    views = [
        transform(torch.cat([bundle.pretrain[i]["points"], bundle.pretrain[i]["normals"]], -1))
        for i in range(b)
    ]
    return [torch.stack([v[k] for v in views]) for k in range(2)]


def _step(method: nn.Module, batch: dict) -> float:
    """One SGD step as the trainer does it (loss, step, end-of-step hook); random draws from seed 1."""
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(1)
    loss = method(batch)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    method.on_train_step_end(1, 10)
    return float(loss.detach())


@pytest.mark.parametrize(
    "name, options",
    [
        ("simclr", {"temperature": 0.2, "projector_hidden": 32, "projector_dim": 8}),
        ("moco", {"queue_size": 16, "projector_hidden": 32, "projector_dim": 8}),
        ("byol", {"projector_hidden": 32, "projector_dim": 8, "predictor_hidden": 32}),
    ],
)
def test_same_core_method_same_loss_on_points_and_images(name: str, options: dict) -> None:
    v1, v2 = _point_views()
    torch.manual_seed(0)
    encoder = FlatEncoder()
    methods = {}
    for kind in ("points", "images"):
        torch.manual_seed(1)  # identical heads
        methods[kind] = METHODS.get(name)(copy.deepcopy(encoder), None, **options)
    point_batch = {VIEWS: [v1, v2], "index": torch.arange(len(v1))}
    image_batch = {VIEWS: [as_images(v1), as_images(v2)], "index": torch.arange(len(v1))}
    torch.testing.assert_close(
        encoder(v1)["global"], encoder(image_batch[VIEWS][0])["global"], rtol=0, atol=0
    )
    losses = {"points": [], "images": []}
    for _ in range(2):  # the second step sees the EMA target / queue the first one left
        losses["points"].append(_step(methods["points"], point_batch))
        losses["images"].append(_step(methods["images"], image_batch))
    assert losses["points"] == losses["images"]


def test_simclr_on_points_is_nt_xent_of_the_projections() -> None:
    v1, v2 = _point_views()
    torch.manual_seed(0)
    method = METHODS.get("simclr")(FlatEncoder(), None, temperature=0.3, projector_hidden=32, projector_dim=8)
    z1 = method.projector(method.encoder(v1)["global"])
    z2 = method.projector(method.encoder(v2)["global"])
    torch.testing.assert_close(method({VIEWS: [v1, v2]})["loss"], nt_xent(z1, z2, temperature=0.3))


@pytest.mark.parametrize("encoder", ["dgcnn", "point_transformer"])
def test_built_in_shapes_give_views_that_the_core_methods_train_on(encoder: str) -> None:
    bundle = DATASETS.get("procedural_parts")(
        categories=["Chair", "Mug"],
        train_per_category=4,
        test_per_category=1,
        num_points=N,
        acd=NO_ACD,
        views="two_view",
        view_options=PointViewOptions(num_points=48),
    )
    assert VIEWS in bundle.produces
    item = bundle.pretrain[0]
    assert {"points", "normals", "acd", "index", "views"} <= set(item)
    assert [tuple(v.shape) for v in item[VIEWS]] == [(48, 3), (48, 3)]
    batch = next(iter(DataLoader(bundle.pretrain, batch_size=8)))
    assert [tuple(v.shape) for v in batch[VIEWS]] == [(8, 48, 3), (8, 48, 3)]
    options = {"dgcnn": dict(k=4, edge_dims=[8], global_dim=16, point_dims=[16]),
               "point_transformer": dict(num_groups=8, group_size=8, embed_dim=16, depth=1, num_heads=2,
                                         embed_dims=[8, 8, 16])}[encoder]  # fmt: skip
    for name in ("simclr", "byol"):
        method = METHODS.get(name)(
            ENCODERS.get(encoder)(**options), bundle, projector_hidden=16, projector_dim=8
        )
        loss = method(batch)["loss"]
        loss.backward()
        assert torch.isfinite(loss) and method.encoder.out_dim > 0
        assert all(p.grad is not None for p in method.encoder.parameters() if p.requires_grad)


def test_views_are_checked_when_a_recipe_loads() -> None:
    base = ["method.name=simclr", "data.acd.enabled=false"]
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "pointcloud" / "simclr.yaml"
    with pytest.raises(ConfigError, match="reads batch key"):
        load_recipe(recipe, [*base, "data.views=null", "data.view_options=null"])
    with pytest.raises(ConfigError, match="two_view"):
        load_recipe(recipe, [*base, "data.views=simclr"])
    with pytest.raises(ConfigError, match="did you mean 'jitter_sigma'"):
        load_recipe(recipe, [*base, "data.view_options.jiter_sigma=0.1"])
    with pytest.raises(ConfigError, match="scale_low"):
        load_recipe(recipe, [*base, "data.view_options.scale_low=2.0"])
