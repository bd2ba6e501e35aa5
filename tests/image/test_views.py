"""Image views: reproducible from torch's RNG alone, paper settings, output format."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from mmssl.modalities.image.view_spec import ViewOptions
from mmssl.modalities.image.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIEW_NAMES,
    blur_kernel_size,
    build_views,
    eval_transform,
)


@pytest.fixture
def image() -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=g)


def find(transform: v2.Compose, kind: type) -> list:
    """(probability, transform) for every ``kind`` in the pipeline, unwrapping RandomApply."""
    found = []
    for t in transform.transforms:
        if isinstance(t, v2.RandomApply):
            found += [(t.p, inner) for inner in t.transforms if isinstance(inner, kind)]
        elif isinstance(t, kind):
            found.append((getattr(t, "p", 1.0), t))
    return found


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_views_reproducible_from_torch_seed_only(name: str, image: torch.Tensor) -> None:
    two_views = build_views(name, 32)
    torch.manual_seed(0)
    random.seed(1)
    np.random.seed(1)
    first = two_views(image)
    torch.manual_seed(0)
    random.seed(2)  # python / numpy RNG state must not matter
    np.random.seed(2)
    second = two_views(image)
    assert len(first) == 2
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.allclose(first[0], first[1]), "the two views should be different draws"
    torch.manual_seed(1)
    assert not torch.allclose(two_views(image)[0], first[0]), "another seed, another view"


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_view_output_format(name: str, image: torch.Tensor) -> None:
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    for inp in (image, pil):
        views = build_views(name, 32)(inp)
        for v in views:
            assert type(v) is torch.Tensor  # plain tensor, not a tv_tensors subclass
            assert v.shape == (3, 32, 32) and v.dtype == torch.float32
            # normalised pixel values lie within [(0 - mean) / std, (1 - mean) / std]
            lo = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
            hi = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
            assert (v >= lo[:, None, None] - 1e-4).all() and (v <= hi[:, None, None] + 1e-4).all()


def test_eval_transform_matches_manual_normalisation() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
    out = eval_transform(32)(img)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out, (img.float() / 255 - mean) / std, atol=1e-5, rtol=0)
    # larger, non-square input: shorter side resized to 32, centre crop; a constant image stays constant
    const = torch.full((3, 64, 80), 200, dtype=torch.uint8)
    out = eval_transform(32)(const)
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, ((200 / 255 - mean) / std).expand(3, 32, 32), atol=1e-5, rtol=0)


def test_blur_kernel_follows_simclr() -> None:
    # SimCLR code: kernel = 2 * ((size // 10) // 2) + 1 -> 23 at 224 px
    assert blur_kernel_size(224) == 23
    assert blur_kernel_size(96) == 9
    assert blur_kernel_size(32) == 3
    assert all(blur_kernel_size(s) % 2 == 1 for s in range(8, 300))


def test_blur_off_for_small_images_and_on_for_larger() -> None:
    for name in VIEW_NAMES:
        tv = build_views(name, 32)
        t1, t2 = tv.transforms
        assert not find(t1, v2.GaussianBlur) and not find(t2, v2.GaussianBlur)
    tv = build_views("simclr", 96)
    ((p, blur),) = find(tv.transforms[0], v2.GaussianBlur)
    assert p == 0.5 and list(blur.kernel_size) == [9, 9] and list(blur.sigma) == [0.1, 2.0]
    assert find(build_views("simclr", 32, ViewOptions(blur=True)).transforms[0], v2.GaussianBlur)


def test_byol_asymmetric_settings() -> None:
    t1, t2 = build_views("byol", 96).transforms
    assert [p for p, _ in find(t1, v2.GaussianBlur)] == [1.0]
    assert [p for p, _ in find(t2, v2.GaussianBlur)] == [0.1]
    assert find(t1, v2.RandomSolarize) == []
    ((p_sol, sol),) = find(t2, v2.RandomSolarize)
    assert p_sol == 0.2 and sol.threshold == 0.5
    ((p_cj, cj),) = find(t1, v2.ColorJitter)
    assert p_cj == 0.8
    # ColorJitter(b, c, s, h) stores factor ranges [1 - x, 1 + x] (hue: [-h, h])
    assert cj.brightness == pytest.approx((0.6, 1.4)) and cj.contrast == pytest.approx((0.6, 1.4))
    assert cj.saturation == pytest.approx((0.8, 1.2)) and cj.hue == pytest.approx((-0.1, 0.1))


@pytest.fixture
def one_thread():
    # Per-sample transforms on tiny images are dominated by intra-op threading overhead; DataLoader
    # workers run single-threaded, so measure the same way.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_simclr_jitter_strength_and_grayscale_rate(one_thread: None) -> None:
    half = build_views("simclr", 32, ViewOptions(jitter_strength=0.5))
    ((_, cj),) = find(half.transforms[0], v2.ColorJitter)
    assert cj.brightness == pytest.approx((0.6, 1.4)) and cj.hue == pytest.approx((-0.1, 0.1))
    # Behaviour: about 20% of views come out gray (all channels equal after un-normalising).
    view = build_views("simclr", 16).transforms[0]  # blur off at 16 px
    g = torch.Generator().manual_seed(5)
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    torch.manual_seed(0)
    n = 300
    gray = 0
    for _ in range(n):
        x = view(img) * std + mean
        gray += int((x.max(0).values - x.min(0).values).max() < 1e-4)
    rate = gray / n
    assert abs(rate - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n), rate
