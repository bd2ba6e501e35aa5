"""Batched views against torchvision's per-sample functional ops, the sampling rules, and the data wiring."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mmssl.data import DataBundle, MultiViewItems
from mmssl.errors import DataError
from mmssl.modalities.image import batch_views as bv
from mmssl.modalities.image.batch_views import BatchView, BatchViews, ViewParams, build_batch_views
from mmssl.modalities.image.items import ImageBatchItems
from mmssl.modalities.image.view_spec import ViewOptions, ViewSpec
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD, build_views
from mmssl.registry import DATASETS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def awkward_images(b: int = 6, size: int = 12, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1] with the awkward cases in them: exact 0 / 1, gray pixels, channel ties."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, size, size, generator=g)
    x[:, :, 0, :3] = 0.0
    x[:, :, 1, :3] = 1.0
    x[:, :, 2, :4] = x[:, :1, 2, :4]  # gray pixels (R = G = B)
    x[:, 1, 3, :4] = x[:, 0, 3, :4]  # R = G ties at the maximum or not
    return x


def per_sample(fn, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(x[i], float(values[i])) for i in range(x.shape[0])])


# ------------------------------------------------------------------------------------ single ops


def test_colour_ops_match_torchvision() -> None:
    x = awkward_images()
    # brightness 1.8 and contrast/saturation 1.8 push values past 1: clamping is part of the check.
    factors = torch.tensor([0.0, 0.2, 0.7, 1.0, 1.4, 1.8])
    for ours, theirs in [
        (bv.adjust_brightness, TF.adjust_brightness),
        (bv.adjust_contrast, TF.adjust_contrast),
        (bv.adjust_saturation, TF.adjust_saturation),
    ]:
        torch.testing.assert_close(ours(x, factors), per_sample(theirs, x, factors), atol=1e-6, rtol=0)
    hues = torch.tensor([-0.5, -0.23, -0.01, 0.0, 0.17, 0.5])
    # Hue: same HSV hexcone maths, evaluated as one expression (v - c * ramp instead of v * s * ...):
    # float32 rounding differences only.
    torch.testing.assert_close(bv.adjust_hue(x, hues), per_sample(TF.adjust_hue, x, hues), atol=1e-5, rtol=0)
    gray_ref = torch.stack([TF.rgb_to_grayscale(x[i], num_output_channels=3) for i in range(6)])
    apply = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(bv.grayscale(x, apply)[apply], gray_ref[apply], atol=1e-6, rtol=0)
    assert torch.equal(bv.grayscale(x, apply)[~apply], x[~apply])
    sol = bv.solarize(x, apply)
    assert torch.equal(sol[apply], torch.stack([TF.solarize(x[i], 0.5) for i in range(6)])[apply])
    assert torch.equal(sol[~apply], x[~apply])


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_gaussian_blur_matches_torchvision(kernel_size: int) -> None:
    x = awkward_images(b=4, size=10)
    sigma = torch.tensor([0.1, 0.6, 1.3, 2.0])
    ref = torch.stack([TF.gaussian_blur(x[i], [kernel_size] * 2, [float(sigma[i])] * 2) for i in range(4)])
    # Separable (two 1-D passes) vs torchvision's 2-D kernel: the same sum, in another order.
    torch.testing.assert_close(bv.gaussian_blur(x, sigma, kernel_size), ref, atol=1e-6, rtol=0)
    apply = torch.tensor([True, False, False, True])
    out = bv.gaussian_blur(x, sigma, kernel_size, apply)
    assert torch.equal(out[~apply], x[~apply])
    # Gaussian sanity, independent of torchvision: kernels sum to 1 and widen with sigma.
    k = bv.gaussian_kernels(sigma, 7)
    torch.testing.assert_close(k.sum(1), torch.ones(4))
    assert (k[:, 3].diff() < 0).all()


def crop_reference(x: torch.Tensor, crops: torch.Tensor, size: int) -> torch.Tensor:
    return torch.stack(
        [
            TF.resized_crop(x[i], *[int(v) for v in crops[i]], [size, size], antialias=False)
            for i in range(len(x))
        ]
    )


def test_resized_crop_matches_torchvision_inside_the_crop() -> None:
    x = awkward_images(b=5, size=10)
    size = 12  # every crop is upsampled, as in the batch pipelines (images stored at the output size)
    crops = torch.tensor([[0, 0, 10, 10], [3, 2, 5, 7], [1, 4, 9, 6], [0, 2, 10, 8], [6, 6, 4, 4]])
    ours = bv.resized_crop(x, crops, size)
    ref = crop_reference(x, crops, size)
    # Both sample output pixel k at crop coordinate u = (k + 0.5) * extent / size - 0.5. Where u falls
    # outside [0, extent - 1] (half a pixel at the crop edges when upsampling), torchvision clamps to the
    # crop's edge pixel while roi_align keeps interpolating with the pixel beyond it: compare elsewhere.
    k = (torch.arange(size) + 0.5) / size
    for i, (top, left, h, w) in enumerate(crops.tolist()):
        rows = (k * h - 0.5 >= 0) & (k * h - 0.5 <= h - 1)
        cols = (k * w - 0.5 >= 0) & (k * w - 0.5 <= w - 1)
        inside = rows[:, None] & cols[None, :]
        torch.testing.assert_close(ours[i][:, inside], ref[i][:, inside], atol=1e-5, rtol=0)
        if (top, left, h, w) == (0, 0, 10, 10):  # the whole image: both clamp at its border, equal everywhere
            torch.testing.assert_close(ours[i], ref[i], atol=1e-5, rtol=0)
        else:  # and the edge band does differ: the exception above is real
            assert not torch.allclose(ours[i], ref[i], atol=1e-3)
    # A crop of exactly the output size is a plain slice (sample points at pixel centres).
    x = awkward_images(b=3, size=20)
    crops = torch.tensor([[0, 0, 12, 12], [4, 1, 12, 12], [8, 8, 12, 12]])
    out = bv.resized_crop(x, crops, 12)
    for i, (top, left, _, _) in enumerate(crops.tolist()):
        assert torch.equal(out[i], x[i, :, top : top + 12, left : left + 12])
    # Halving (a crop twice the output) averages each 2 x 2 block: roi_align's adaptive sampling grid.
    out = bv.resized_crop(x, torch.tensor([[0, 0, 20, 20]] * 3), 10)
    torch.testing.assert_close(out, torch.nn.functional.avg_pool2d(x, 2), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------ jitter order


PERMUTATIONS = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1], [3, 0, 1, 2], [2, 1, 0, 3]]
TV_OPS = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]


def jitter_reference(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(x.shape[0]):
        y = x[i]
        for op in order[i].tolist():
            y = TV_OPS[op](y, float(factors[i, op]))
        out.append(y)
    return torch.stack(out)


def test_color_jitter_honours_per_sample_order() -> None:
    x = awkward_images()
    g = torch.Generator().manual_seed(1)
    factors = torch.rand(6, 4, generator=g) * 1.2 + 0.4
    factors[:, 3] = torch.rand(6, generator=g) * 0.8 - 0.4
    order = torch.tensor(PERMUTATIONS)
    out = bv.color_jitter(x, factors, order)
    torch.testing.assert_close(out, jitter_reference(x, factors, order), atol=2e-5, rtol=0)
    # The order matters for these factors (else the check above could not tell orders apart).
    reversed_ref = jitter_reference(x, factors, order.flip(1))
    for i in range(6):
        assert not torch.allclose(out[i], reversed_ref[i], atol=1e-3)
    # Samples not selected pass unchanged; selected ones are as before.
    apply = torch.tensor([True, False, True, False, False, True])
    masked = bv.color_jitter(x, factors, order, apply)
    assert torch.equal(masked[~apply], x[~apply])
    torch.testing.assert_close(masked[apply], out[apply], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------ whole view


def tv_view_reference(x: torch.Tensor, p: ViewParams, view: BatchView) -> torch.Tensor:
    """The view, sample by sample, with torchvision.transforms.v2.functional."""
    out = []
    for i in range(x.shape[0]):
        y = TF.resized_crop(x[i], *p.crops[i].tolist(), [view.size] * 2, antialias=False)
        if p.flip[i]:
            y = TF.horizontal_flip(y)
        if p.jitter[i]:
            for op in p.order[i].tolist():
                y = TV_OPS[op](y, float(p.factors[i, op]))
        if p.gray[i]:
            y = TF.rgb_to_grayscale(y, num_output_channels=3)
        if p.blur[i]:
            y = TF.gaussian_blur(y, [view.blur_kernel] * 2, [float(p.sigma[i])] * 2)
        if p.solarize[i]:
            y = TF.solarize(y, 0.5)
        out.append(TF.normalize(y, list(view.mean), list(view.std)))
    return torch.stack(out)


def test_apply_with_explicit_params_matches_per_sample_pipeline() -> None:
    b, size = 8, 12
    x = awkward_images(b=b, size=20, seed=3)
    spec = ViewSpec(flip_prob=1, jitter_prob=1, grayscale_prob=1, blur_prob=1, solarize_prob=1)
    view = BatchView(size, spec)
    g = torch.Generator().manual_seed(4)
    coin = lambda: torch.rand(b, generator=g) < 0.5  # noqa: E731
    factors = torch.rand(b, 4, generator=g) * 1.6 + 0.2
    factors[:, 3] = torch.rand(b, generator=g) - 0.5
    params = ViewParams(
        # size x size crops: no interpolation, so the comparison is exact up to float rounding
        crops=torch.tensor(
            [[t, l, size, size] for t, l in torch.randint(0, 9, (b, 2), generator=g).tolist()]
        ),
        flip=coin(),
        jitter=coin(),
        factors=factors,
        order=torch.tensor(PERMUTATIONS + PERMUTATIONS[:2]),
        gray=coin(),
        blur=coin(),
        sigma=torch.rand(b, generator=g) * 1.9 + 0.1,
        solarize=coin(),
    )
    out = view.apply(x, params)
    assert out.shape == (b, 3, size, size) and out.dtype == torch.float32
    torch.testing.assert_close(out, tv_view_reference(x, params, view), atol=1e-4, rtol=0)
    # uint8 input: the same as converting to [0, 1] floats first
    x8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(view.apply(x8, params), view.apply(x8.float() / 255, params), atol=0, rtol=0)


def test_identity_view_is_normalisation() -> None:
    x8 = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    spec = ViewSpec(
        crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0, jitter_prob=0, grayscale_prob=0
    )
    view = BatchView(10, spec)
    ref = TF.normalize(TF.to_dtype(x8, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD))
    torch.testing.assert_close(view(x8), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_reproducible_under_seed_and_shapes(device: str) -> None:
    x8 = torch.randint(0, 256, (16, 3, 24, 24), dtype=torch.uint8, device=device)
    transform = build_batch_views("byol", 16, ViewOptions(blur=True))

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return transform({"images": x8, "index": torch.arange(16, device=device)})["views"]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.allclose(a[0], c[0]) and not torch.allclose(a[0], a[1])
    for v in a:
        assert v.shape == (16, 3, 16, 16) and v.dtype == torch.float32 and v.device.type == device
        # normalised [0, 1] values: within [(0 - mean) / std, (1 - mean) / std] per channel
        lo = (0 - torch.tensor(IMAGENET_MEAN, device=device)) / torch.tensor(IMAGENET_STD, device=device)
        hi = (1 - torch.tensor(IMAGENET_MEAN, device=device)) / torch.tensor(IMAGENET_STD, device=device)
        assert (v >= lo.view(1, 3, 1, 1) - 1e-5).all() and (v <= hi.view(1, 3, 1, 1) + 1e-5).all()
    # a float batch in [0, 1] gives the same views under the same seed
    torch.manual_seed(0)
    f = transform({"images": x8.float() / 255})["views"]
    assert all(torch.equal(u, v) for u, v in zip(a, f, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu_for_the_same_params() -> None:
    view = BatchView(
        16, ViewSpec(flip_prob=0.5, jitter_prob=1, grayscale_prob=0.3, blur_prob=1, solarize_prob=0.5)
    )
    x = awkward_images(b=32, size=24)
    params = view.sample_params(32, 24, 24)
    torch.testing.assert_close(
        view.apply(x.cuda(), params.to("cuda")).cpu(), view.apply(x, params), atol=1e-4, rtol=0
    )


# ------------------------------------------------------------------------------------ sampling


def test_parameter_statistics() -> None:
    torch.manual_seed(0)
    n = 20_000
    view = BatchView(32, ViewSpec(jitter=(0.8, 0.8, 0.8, 0.2), blur_prob=0.5, solarize_prob=0.2))
    p = view.sample_params(n, 32, 32)
    for rate, expected in [(p.flip, 0.5), (p.jitter, 0.8), (p.gray, 0.2), (p.blur, 0.5), (p.solarize, 0.2)]:
        assert abs(rate.float().mean().item() - expected) < 0.02
    # factors uniform on their ranges: b, c, s in [0.2, 1.8], hue in [-0.2, 0.2]
    lo, hi = torch.tensor([0.2, 0.2, 0.2, -0.2]), torch.tensor([1.8, 1.8, 1.8, 0.2])
    assert (p.factors >= lo).all() and (p.factors <= hi).all()
    torch.testing.assert_close(p.factors.mean(0), (lo + hi) / 2, atol=0.02, rtol=0)
    torch.testing.assert_close(p.factors.var(0), (hi - lo) ** 2 / 12, atol=0.02, rtol=0)
    # orders are permutations, each op equally likely at each position
    assert torch.equal(p.order.sort(1).values, torch.arange(4).expand(n, 4))
    freq = torch.stack([(p.order == op).float().mean(0) for op in range(4)])
    torch.testing.assert_close(freq, torch.full((4, 4), 0.25), atol=0.02, rtol=0)
    assert ((p.sigma >= 0.1) & (p.sigma <= 2.0)).all() and abs(p.sigma.mean().item() - 1.05) < 0.02
    # crops inside the image, area fraction in [0.08, 1] up to side rounding
    top, left, h, w = p.crops.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = (h * w).float() / 32**2
    assert area.min() > 0.06 and area.max() <= 1.0 and 0.35 < area.mean() < 0.6


def torchvision_crops(n: int, height: int, width: int, scale: tuple[float, float]) -> torch.Tensor:
    rrc = v2.RandomResizedCrop(8, scale=scale)
    img = torch.zeros(3, height, width)
    out = []
    for _ in range(n):
        p = rrc.make_params([img])
        out.append([p["top"], p["left"], p["height"], p["width"]])
    return torch.tensor(out)


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.9, 1.0)])
def test_crop_sampler_matches_torchvision_distribution(scale: tuple[float, float]) -> None:
    # (0.9, 1.0): a candidate fits ~20% of the time, so ~15% of samples use the centre fallback;
    # this checks the tries-then-fallback rule, not only the candidate distribution.
    torch.manual_seed(0)
    ours = bv.sample_crop_boxes(20_000, 24, 30, scale=scale)
    theirs = torchvision_crops(1500, 24, 30, scale)

    def stats(c: torch.Tensor) -> torch.Tensor:
        top, left, h, w = c.T.float()
        area = h * w / (24 * 30)
        return torch.stack(
            [
                area.mean(),
                area.median(),
                (w / h).log().mean(),
                ((top + h / 2) / 24).mean(),
                ((left + w / 2) / 30).mean(),
                ((h == 24) & (w == 30))
                .float()
                .mean(),  # whole-image crops (fallback here: 30/24 is in ratio)
            ]
        )

    torch.testing.assert_close(stats(ours), stats(theirs), atol=0.04, rtol=0)


def test_crop_fallback_is_torchvisions_centre_crop() -> None:
    # Nothing can fit (area > image): every sample gets the deterministic fallback.
    for height, width in [(20, 60), (60, 20), (30, 32)]:
        ours = bv.sample_crop_boxes(5, height, width, scale=(2.0, 3.0))
        theirs = torchvision_crops(1, height, width, (2.0, 3.0))
        assert torch.equal(ours, theirs.expand(5, 4))


# ------------------------------------------------------------------------------------ recipes


def describe_compose(compose: v2.Compose) -> dict:
    d: dict = {"flip": 0.0, "jitter_p": 0.0, "gray": 0.0, "blur": 0.0, "solarize": 0.0}
    for t in compose.transforms:
        if isinstance(t, v2.RandomResizedCrop):
            d["scale"], d["ratio"], d["size"] = tuple(t.scale), tuple(t.ratio), t.size[0]
        elif isinstance(t, v2.RandomHorizontalFlip):
            d["flip"] = t.p
        elif isinstance(t, v2.RandomApply) and isinstance(t.transforms[0], v2.ColorJitter):
            j = t.transforms[0]
            d["jitter_p"] = t.p
            d["ranges"] = (j.brightness, j.contrast, j.saturation, j.hue)
        elif isinstance(t, v2.RandomGrayscale):
            d["gray"] = t.p
        elif isinstance(t, v2.RandomApply) and isinstance(t.transforms[0], v2.GaussianBlur):
            d["blur"], d["kernel"], d["sigma"] = (
                t.p,
                t.transforms[0].kernel_size[0],
                tuple(t.transforms[0].sigma),
            )
        elif isinstance(t, v2.RandomSolarize):
            d["solarize"], d["threshold"] = t.p, t.threshold
        elif isinstance(t, v2.Normalize):
            d["mean"], d["std"] = tuple(t.mean), tuple(t.std)
    return d


def describe_batch_view(view: BatchView) -> dict:
    d = {
        "scale": view.crop_scale,
        "ratio": view.crop_ratio,
        "size": view.size,
        "flip": view.flip_prob,
        "jitter_p": view.jitter_prob,
        "ranges": tuple(None if r == (c, c) else r for r, c in zip(view.factor_ranges, (1, 1, 1, 0))),
        "gray": view.grayscale_prob,
        "blur": view.blur_prob,
        "solarize": view.solarize_prob,
        "mean": view.mean,
        "std": view.std,
    }
    if view.blur_prob > 0:
        d["kernel"], d["sigma"] = view.blur_kernel, view.blur_sigma
    if view.solarize_prob > 0:
        d["threshold"] = 0.5
    return d


@pytest.mark.parametrize("name", ["simclr", "moco_v2", "byol"])
@pytest.mark.parametrize("size,blur", [(32, None), (96, None), (32, True), (96, False)])
def test_recipes_equal_the_per_sample_views(name: str, size: int, blur: bool | None) -> None:
    options = ViewOptions(blur=blur)
    per_sample, batched = build_views(name, size, options), build_batch_views(name, size, options)
    for t, view in zip(per_sample.transforms, batched.views, strict=True):
        expected = describe_compose(t)
        expected["ranges"] = tuple(
            None if r is None else tuple(float(v) for v in r) for r in expected["ranges"]
        )
        assert describe_batch_view(view) == expected
    assert (batched.views[0] is batched.views[1]) == (per_sample.transforms[0] is per_sample.transforms[1])
    with pytest.raises(ValueError, match="unknown view recipe"):
        build_batch_views("simclrr", size)


def test_batch_views_passes_other_keys() -> None:
    out = build_batch_views("simclr", 8)(
        {"images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "index": [4, 5]}
    )
    assert set(out) == {"views", "index"} and out["index"] == [4, 5] and len(out["views"]) == 2
    assert isinstance(build_batch_views("byol", 8), BatchViews)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        BatchView(8)(torch.zeros(3, 8, 8))


# ------------------------------------------------------------------------------------ data wiring


def test_procedural_shapes_batch_and_per_sample(tmp_path: Path) -> None:
    common = dict(train_per_class=1, test_per_class=1, num_classes=4, cache_dir=str(tmp_path))
    bundle = DATASETS.build("procedural_shapes", **common)
    assert isinstance(bundle, DataBundle) and isinstance(bundle.batch_transform, BatchViews)
    item = bundle.pretrain[2]
    assert set(item) == {"images", "index"} and item["index"] == 2
    assert item["images"].dtype == torch.uint8 and item["images"].shape == (3, 32, 32)
    assert torch.equal(item["images"], bundle.eval_train.base.images[2])
    batch = next(iter(DataLoader(bundle.pretrain, batch_size=4)))
    out = bundle.batch_transform(batch)
    assert [v.shape for v in out["views"]] == [(4, 3, 32, 32)] * 2 and out["index"].tolist() == [0, 1, 2, 3]
    assert bundle.stats["augment"] == "batch"

    legacy = DATASETS.build("procedural_shapes", augment="per_sample", **common)
    assert legacy.batch_transform is None and isinstance(legacy.pretrain, MultiViewItems)
    single = DATASETS.build("procedural_shapes", views=None, **common)
    assert single.batch_transform is None and set(single.pretrain[0]) == {"image", "label", "index"}
    with pytest.raises(DataError, match="unknown augment"):
        DATASETS.build("procedural_shapes", augment="gpu", **common)


def test_image_folder_batches_images_of_different_sizes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    # 40 x 80, four 20-pixel-wide vertical bands of constant colour. Shorter side 40 -> 32 makes it
    # 32 x 64 (bands 16 px wide); the centre 32 x 32 square shows the inner two bands, and pixels more
    # than the antialias filter's reach from the band edge keep the band's colour exactly.
    colours = torch.tensor([[250, 0, 0], [0, 200, 0], [0, 0, 150], [90, 90, 90]], dtype=torch.uint8)
    bands = colours.repeat_interleave(20, 0).T[:, None, :].expand(3, 40, 80).contiguous()
    images = {
        "a/bands.png": bands,
        "a/exact.png": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g),
        "b/wide.png": torch.randint(0, 256, (3, 20, 50), dtype=torch.uint8, generator=g),
        "b/tall.png": torch.randint(0, 256, (3, 45, 33), dtype=torch.uint8, generator=g),
    }
    for split in ("train", "test"):
        for name, img in images.items():
            (tmp_path / split / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / split / name)
    bundle = DATASETS.build("image_folder", root=str(tmp_path), views="moco_v2", image_size=32)
    assert isinstance(bundle.pretrain, ImageBatchItems)
    items = {bundle.pretrain.base.samples[i][0].name: bundle.pretrain[i]["images"] for i in range(4)}
    band_view = items["bands.png"]
    assert (band_view[:, :, 2:14] == colours[1].view(3, 1, 1)).all()  # output cols 0-15: band 1
    assert (band_view[:, :, 18:30] == colours[2].view(3, 1, 1)).all()  # output cols 16-31: band 2
    assert torch.equal(items["exact.png"], images["a/exact.png"])  # same size: untouched
    assert all(t.shape == (3, 32, 32) and t.dtype == torch.uint8 for t in items.values())
    batch = next(iter(DataLoader(bundle.pretrain, batch_size=4)))
    assert [v.shape for v in bundle.batch_transform(batch)["views"]] == [(4, 3, 32, 32)] * 2


def test_blur_kernel_follows_image_size() -> None:
    assert build_batch_views("simclr", 96).views[0].blur_kernel == 9
    assert build_batch_views("simclr", 224).views[0].blur_kernel == 23
    assert math.isclose(build_batch_views("simclr", 32).views[0].blur_prob, 0.0)
