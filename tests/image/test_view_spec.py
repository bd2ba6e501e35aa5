"""One view specification for both augmentation paths: the papers' presets, recipe overrides, and
bit-identical views against pipelines written out from the papers' constants and against checksums of
the views made before the specification existed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from mmssl.config import load_recipe
from mmssl.errors import ConfigError
from mmssl.modalities.image.batch_views import BatchView, BatchViews, build_batch_views
from mmssl.modalities.image.view_spec import (
    SINGLE_VIEW_NAMES,
    VIEW_NAMES,
    VIEW_PRESETS,
    ViewOptions,
    ViewSpec,
    resolve_views,
)
from mmssl.modalities.image.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_single_view,
    build_views,
    sample_views,
)
from mmssl.options import builder_options
from mmssl.registry import DATASETS

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"

# (crop area, flip p, jitter (b, c, s, h), jitter p, grayscale p, blur p, blur sigma, solarize p) per view
PAPERS = {
    # SimCLR (Chen et al., ICML 2020), appendix A: colour distortion of strength s = 1.
    "simclr": [((0.08, 1.0), 0.5, (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, (0.1, 2.0), 0.0)] * 2,
    # MoCo v2 (Chen, Fan, Girshick & He, 2020), "aug+": MoCo v1's augmentation plus blur.
    "moco_v2": [((0.2, 1.0), 0.5, (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5, (0.1, 2.0), 0.0)] * 2,
    # BYOL (Grill et al., NeurIPS 2020), table 6: the two views differ in blur and solarisation.
    "byol": [
        ((0.08, 1.0), 0.5, (0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 1.0, (0.1, 2.0), 0.0),
        ((0.08, 1.0), 0.5, (0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 0.1, (0.1, 2.0), 0.2),
    ],
    # MAE (He et al., CVPR 2022), appendix A.1: random resized crop and flip only.
    "mae": [((0.2, 1.0), 0.5, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.0, (0.1, 2.0), 0.0)],
}


def as_row(spec: ViewSpec) -> tuple:
    return (
        spec.crop_scale,
        spec.flip_prob,
        spec.jitter,
        spec.jitter_prob,
        spec.grayscale_prob,
        spec.blur_prob,
        spec.blur_sigma,
        spec.solarize_prob,
    )


def test_presets_are_the_papers() -> None:
    assert set(VIEW_PRESETS) == set(PAPERS)
    for name, rows in PAPERS.items():
        assert [as_row(spec) for spec in VIEW_PRESETS[name]] == rows, name
        assert all(spec.crop_ratio == (3 / 4, 4 / 3) for spec in VIEW_PRESETS[name])
    assert VIEW_NAMES == ("simclr", "moco_v2", "byol") and SINGLE_VIEW_NAMES == ("mae",)


def test_small_images_drop_the_blur_unless_told() -> None:
    for name in VIEW_NAMES:
        assert all(spec.blur_prob == 0 for spec in resolve_views(name, 32))
        assert resolve_views(name, 96) == VIEW_PRESETS[name]
        assert resolve_views(name, 32, ViewOptions(blur=True)) == VIEW_PRESETS[name]
        assert all(spec.blur_prob == 0 for spec in resolve_views(name, 96, ViewOptions(blur=False)))


OVERRIDES = {
    "crop_scale": [0.3, 0.9],
    "crop_ratio": [0.5, 2.0],
    "flip_prob": 0.0,
    "jitter": [0.1, 0.2, 0.3, 0.05],
    "jitter_prob": 0.4,
    "grayscale_prob": 0.6,
    "blur_prob": 0.7,
    "blur_sigma": [0.5, 1.5],
    "solarize_prob": 0.3,
}


@pytest.mark.parametrize("name", list(VIEW_PRESETS))
@pytest.mark.parametrize("key", list(OVERRIDES))
def test_an_override_changes_that_field_in_every_view_and_nothing_else(name: str, key: str) -> None:
    value = OVERRIDES[key]
    before = resolve_views(name, 96)
    after = resolve_views(name, 96, ViewOptions(**{key: value}))
    expected = tuple(float(v) for v in value) if isinstance(value, list) else float(value)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert getattr(new, key) == expected
        assert dataclasses.replace(new, **{key: getattr(old, key)}) == old


def test_jitter_strength_scales_every_views_jitter() -> None:
    # SimCLR's s: (0.8s, 0.8s, 0.8s, 0.2s); s = 0.5 is its CIFAR-10 setting.
    (half, _) = resolve_views("simclr", 32, ViewOptions(jitter_strength=0.5))
    assert half.jitter == (0.4, 0.4, 0.4, 0.1)
    byol = resolve_views("byol", 96, ViewOptions(jitter_strength=0.5))
    assert [spec.jitter for spec in byol] == [(0.2, 0.2, 0.1, 0.05)] * 2
    assert [dataclasses.replace(s, jitter=(0.4, 0.4, 0.2, 0.1)) for s in byol] == list(VIEW_PRESETS["byol"])


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="crop_scale takes 2 numbers"):
        ViewOptions(crop_scale=[0.2])
    with pytest.raises(ValueError, match="blur_prob must lie in"):
        ViewOptions(blur_prob=1.5)
    with pytest.raises(ValueError, match="hue jitter"):
        resolve_views("simclr", 32, ViewOptions(jitter_strength=3.0))
    with pytest.raises(ValueError, match="unknown view recipe"):
        resolve_views("simclrr", 32)


def test_unknown_view_option_is_named_with_the_closest_key(tmp_path) -> None:
    builder = DATASETS.get("procedural_shapes")
    with pytest.raises(ConfigError) as err:
        builder_options(builder, {"view_options": {"jiter": 0.4}}, "data", kind="dataset", name="x")
    assert "unknown key 'data.view_options.jiter'" in str(err.value)
    assert "did you mean 'jitter'" in str(err.value)
    with pytest.raises(
        ConfigError, match=r"data\.view_options\.jitter_strenght.*did you mean 'jitter_strength'"
    ):
        load_recipe(QUICKSTART, ["data.view_options.jitter_strenght=0.5"])
    with pytest.raises(ConfigError, match=r"data\.view_options\.crop_scale"):
        load_recipe(QUICKSTART, ["data.view_options.crop_scale=big"])
    # a recipe section is coerced to the typed options
    cfg = load_recipe(QUICKSTART, ["data.view_options={crop_scale: [0.2, 1], jitter_strength: 0.5}"])
    options = builder_options(builder, cfg.component("data")[1], "data", kind="dataset", name="x")
    assert options["view_options"] == ViewOptions(crop_scale=[0.2, 1.0], jitter_strength=0.5)
    # built directly with a plain mapping, the builder checks it the same way
    with pytest.raises(ConfigError, match="unknown key 'data.view_options.jiter'"):
        DATASETS.build("procedural_shapes", view_options={"jiter": 0.4}, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="needs data.views"):
        DATASETS.build(
            "procedural_shapes", views=None, view_options={"flip_prob": 0}, cache_dir=str(tmp_path)
        )


def test_both_paths_read_the_same_spec_objects(tmp_path) -> None:
    specs = resolve_views("byol", 96, ViewOptions(crop_scale=[0.3, 1.0]))
    per_sample, batched = sample_views(specs, 96), BatchViews.from_specs(specs, 96)
    assert all(t.spec is s for t, s in zip(per_sample.transforms, specs, strict=True))
    assert all(v.spec is s for v, s in zip(batched.views, specs, strict=True))
    # and through the registered builder, with the recipe's options
    common = dict(
        views="byol",
        image_size=48,
        train_per_class=1,
        test_per_class=1,
        cache_dir=str(tmp_path),
        view_options={"crop_scale": [0.3, 1.0], "solarize_prob": 0.5},
    )
    batch = DATASETS.build("procedural_shapes", **common)
    sample = DATASETS.build("procedural_shapes", augment="per_sample", **common)
    expected = resolve_views("byol", 48, ViewOptions(crop_scale=[0.3, 1.0], solarize_prob=0.5))
    assert tuple(v.spec for v in batch.batch_transform.views) == expected
    assert tuple(t.spec for t in sample.pretrain.views.transforms) == expected
    mae = DATASETS.build(
        "procedural_shapes", views="mae", cache_dir=str(tmp_path), view_options={"flip_prob": 0.0}
    )
    assert mae.pretrain.transform.spec == resolve_views("mae", 32, ViewOptions(flip_prob=0.0))[0]


# ---------------------------------------------------------------------- bit-identical views


def paper_pipeline(size: int, row: tuple, blur: bool) -> v2.Compose:
    """The per-sample pipeline of one view, written out from the constants of :data:`PAPERS`."""
    crop, flip, jitter, jitter_p, gray_p, blur_p, sigma, solar_p = row
    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=crop, antialias=True),
        v2.RandomHorizontalFlip(flip),
    ]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if jitter_p > 0:
        steps.append(v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_p))
    if gray_p > 0:
        steps.append(v2.RandomGrayscale(gray_p))
    if blur and blur_p > 0:
        kernel = 2 * ((size // 10) // 2) + 1  # SimCLR: about 10% of the side, odd
        steps.append(v2.RandomApply([v2.GaussianBlur(max(3, kernel), sigma=sigma)], p=blur_p))
    if solar_p > 0:
        steps.append(v2.RandomSolarize(0.5, p=solar_p))
    steps += [v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)), v2.ToPureTensor()]
    return v2.Compose(steps)


@pytest.mark.parametrize("name", list(VIEW_PRESETS))
@pytest.mark.parametrize("size", [32, 96])
def test_per_sample_views_equal_the_papers_pipelines_bit_for_bit(name: str, size: int) -> None:
    reference = [paper_pipeline(size, row, blur=size > 32) for row in PAPERS[name]]
    ours = build_views(name, size).transforms if name in VIEW_NAMES else [build_single_view(name, size)]
    img = torch.randint(0, 256, (3, size + 8, size + 4), dtype=torch.uint8, generator=torch.Generator())
    for seed in range(3):
        torch.manual_seed(seed)
        expected = [t(img) for t in reference]  # the views of one sample, in order
        torch.manual_seed(seed)
        got = [t(img) for t in ours]
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("name", VIEW_NAMES)
@pytest.mark.parametrize("size", [32, 96])
def test_batched_views_equal_batch_views_built_from_the_papers_constants(name: str, size: int) -> None:
    views = []
    for crop, flip, jitter, jitter_p, gray_p, blur_p, sigma, solar_p in PAPERS[name]:
        spec = ViewSpec(
            crop_scale=crop,
            flip_prob=flip,
            jitter=jitter,
            jitter_prob=jitter_p,
            grayscale_prob=gray_p,
            blur_prob=blur_p if size > 32 else 0.0,
            blur_sigma=sigma,
            solarize_prob=solar_p,
        )
        views.append(BatchView(size, spec))
    x8 = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8, generator=torch.Generator())
    torch.manual_seed(0)
    expected = [view(x8) for view in views]
    torch.manual_seed(0)
    got = build_batch_views(name, size)({"images": x8})["views"]
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


# Sums and absolute sums (float64) of the views made by the code before the view specification
# (views.build_views / batch_views.build_batch_views as of commit 31bb729), same inputs and seeds.
# A change in the order or number of random draws moves them by far more than the tolerance.
BEFORE = {
    "batch/simclr/32": [[6666.074985, 16231.811012], [8476.874402, 15269.364232]],
    "sample/simclr/32": [[3288.189693, 5125.8994], [2384.507004, 3735.427625]],
    "batch/simclr/96": [[58905.877364, 110193.688028], [76639.793225, 108446.337824]],
    "sample/simclr/96": [[29683.671653, 32791.431378], [13208.590652, 24271.960731]],
    "batch/moco_v2/32": [[5299.554205, 13503.905312], [6582.508814, 14150.664082]],
    "sample/moco_v2/32": [[2393.97737, 3955.839065], [1718.367743, 3085.996711]],
    "batch/moco_v2/96": [[49592.758846, 77965.230475], [60748.84393, 96114.817863]],
    "sample/moco_v2/96": [[21403.049526, 24576.946517], [10539.784388, 19498.059446]],
    "batch/byol/32": [[5593.555595, 12942.25423], [4447.502094, 13737.767062]],
    "sample/byol/32": [[2403.064195, 3956.221705], [1620.673286, 2982.776211]],
    "batch/byol/96": [[50043.098999, 75597.740109], [41009.723273, 113843.566148]],
    "sample/byol/96": [[21378.557381, 24924.275728], [10618.770641, 19652.792862]],
    "sample/mae/32": [[730.808823, 2289.382582]],
}


def checksums(views: list[torch.Tensor]) -> list[list[float]]:
    return [[float(v.double().sum()), float(v.double().abs().sum())] for v in views]


@pytest.mark.parametrize("key", list(BEFORE))
def test_views_equal_those_made_before_the_view_spec(key: str) -> None:
    path, name, size = key.split("/")
    size = int(size)
    if path == "batch":
        x8 = torch.randint(
            0, 256, (6, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        torch.manual_seed(7)
        views = build_batch_views(name, size)({"images": x8})["views"]
    else:
        g = torch.Generator().manual_seed(1)
        img = torch.randint(0, 256, (3, size + 8, size + 4), dtype=torch.uint8, generator=g)
        transform = build_views(name, size) if name in VIEW_NAMES else build_single_view(name, size)
        torch.manual_seed(7)
        views = transform(img) if name in VIEW_NAMES else [transform(img)]
    # float32 kernels may round differently on other CPUs: a tolerance far below any change of draws
    for got, expected in zip(checksums(views), BEFORE[key], strict=True):
        assert got == pytest.approx(expected, abs=0.05, rel=1e-6)
