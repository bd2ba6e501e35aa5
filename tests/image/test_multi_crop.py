"""Multi-crop (SwAV Sec. 3.2): small low-resolution views appended to a two-view preset, in both
augmentation paths and through the registered dataset builder; methods that take two views refuse them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mmssl.core.methods.byol import BYOL
from mmssl.core.methods.simclr import SimCLR
from mmssl.data.keys import VIEWS
from mmssl.errors import ConfigError
from mmssl.modalities.image.batch_views import BatchViews
from mmssl.modalities.image.encoders import small_cnn
from mmssl.modalities.image.view_spec import SWAV_SMALL_CROP_SCALE, ViewOptions, resolve_views
from mmssl.modalities.image.views import sample_views
from mmssl.registry import DATASETS


def test_small_crops_follow_the_first_view_with_their_own_area_and_size() -> None:
    options = ViewOptions(jitter_strength=0.5, small_crops=3, small_crop_size=16)
    specs = resolve_views("simclr", 32, options)
    full = resolve_views("simclr", 32, ViewOptions(jitter_strength=0.5))
    assert specs[:2] == full and len(specs) == 5
    for small in specs[2:]:
        assert small.size == 16 and small.crop_scale == SWAV_SMALL_CROP_SCALE
        # everything else is the first view's, after the recipe's overrides
        assert dataclasses.replace(small, size=None, crop_scale=full[0].crop_scale) == full[0]
    # SwAV's ratio (96 px for 224 px views) by default, and a recipe's own crop area
    default = resolve_views("moco_v2", 224, ViewOptions(small_crops=2, small_crop_scale=[0.1, 0.3]))
    assert [s.size for s in default] == [None, None, 96, 96]
    assert resolve_views("simclr", 32, ViewOptions(small_crops=1))[2].size == 16
    assert default[2].crop_scale == (0.1, 0.3)


def test_bad_small_crop_options_are_named() -> None:
    with pytest.raises(ValueError, match="small_crops must be >= 0"):
        ViewOptions(small_crops=-1)
    with pytest.raises(ValueError, match="need small_crops > 0"):
        ViewOptions(small_crop_size=16)
    with pytest.raises(ValueError, match="crop_scale"):
        ViewOptions(small_crops=2, small_crop_scale=[0.5, 0.1])
    with pytest.raises(ValueError, match="size must be a positive"):
        ViewOptions(small_crops=2, small_crop_size=0)
    with pytest.raises(ValueError, match="two or more views, not 'mae'"):
        resolve_views("mae", 32, ViewOptions(small_crops=2))


@pytest.mark.parametrize("augment", ["per_sample", "batch"])
def test_both_paths_give_the_small_views_at_their_size(tmp_path, augment: str) -> None:
    bundle = DATASETS.build(
        "procedural_shapes",
        views="simclr",
        image_size=32,
        train_per_class=2,
        test_per_class=1,
        cache_dir=str(tmp_path),
        augment=augment,
        view_options={"small_crops": 2, "small_crop_size": 16},
    )
    loader = torch.utils.data.DataLoader(bundle.pretrain, batch_size=4)
    batch = next(iter(loader))
    if bundle.batch_transform is not None:
        batch = bundle.batch_transform(batch)
    assert [tuple(v.shape) for v in batch[VIEWS]] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 2
    # a SimCLR step takes them; BYOL, which compares exactly two views, names the option
    encoder = small_cnn(widths=(8, 16, 16, 16), stem_stride=2)
    assert torch.isfinite(SimCLR(encoder, projector_hidden=16, projector_dim=8)(batch)["loss"])
    with pytest.raises(ConfigError, match=r"BYOL takes two views per sample, the data gives 4.*small_crops"):
        BYOL(encoder, projector_hidden=16, predictor_hidden=16)(batch)


def test_pipelines_build_one_transform_per_distinct_spec() -> None:
    specs = resolve_views("simclr", 32, ViewOptions(small_crops=4, small_crop_size=16))
    per_sample, batched = sample_views(specs, 32), BatchViews.from_specs(specs, 32)
    assert [t.size for t in per_sample.transforms] == [32, 32, 16, 16, 16, 16]
    assert [v.size for v in batched.views] == [32, 32, 16, 16, 16, 16]
    # equal specs share one pipeline (which draws afresh each time): one full, one small
    assert len({id(t) for t in per_sample.transforms}) == 2
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    views = per_sample(image)
    assert not torch.equal(views[2], views[3])


def test_recipe_key_reaches_the_views(tmp_path) -> None:
    with pytest.raises(ConfigError, match="small_crops"):
        DATASETS.build(
            "procedural_shapes",
            views="mae",
            cache_dir=str(tmp_path),
            view_options={"small_crops": 2},
        )
