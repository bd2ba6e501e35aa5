"""Pictures of captioned attributes: one shape of a named colour and fill on a grey background.

The masks come from the shared procedural renderer (:mod:`mmssl.procedural.shapes`: ``shape_mask`` for the
outline, ``texture_mask`` for the fill pattern, drawn on a 3x finer grid and box-averaged, so edges are
anti-aliased). What varies besides the attributes -- position, size (radius 28-42 % of the side),
rotation, aspect, pattern angle / period / phase, the exact shade (+-15 per channel around the named
colour), the background grey and its gradient, the illumination ramp and the sensor noise -- is drawn
from the picture's own generator, so a caption describes the picture without determining it. The
background is low-saturation grey, so the only saturated colour in the picture is the one the caption
names; a pattern alternates that colour with a darker shade (45 %) of it.

A picture is a function of ``(attributes, generator)``; the generator of sample ``i`` of a split is seeded
by ``(seed, split, i)`` (:func:`picture_rng`), so splits are disjoint draws and a sample does not depend on
the split's size. Rendered splits are cached as ``.npz`` (:class:`CaptionedPictures`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.cache import cache_folder
from mmssl.crossmodal.image_text.captions import (
    COLOUR_NAMES,
    COLOURS,
    FILL_PATTERNS,
    FILLS,
    SHAPES,
    Attributes,
)
from mmssl.errors import DataError
from mmssl.procedural.shapes import (
    box_downsample,
    load_cached_images,
    pixel_grid,
    save_cached_images,
    shape_mask,
    texture_mask,
)

log = logging.getLogger(__name__)

# Bump when the drawing code changes, so stale caches are not reused.
RENDER_VERSION = 1
SPLIT_CODES = {"train": 0, "test": 1}
_SUPERSAMPLE = 3
#: a patterned fill alternates the named colour with this fraction of it (a darker shade of the same hue)
DARK_SHADE = 0.45


def picture_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one picture: a function of ``(seed, split, index)`` only."""
    return np.random.default_rng(
        np.random.SeedSequence([RENDER_VERSION, int(seed), SPLIT_CODES[split], index])
    )


def render_picture(
    attributes: Attributes, rng: np.random.Generator, image_size: int = 32, supersample: int = _SUPERSAMPLE
) -> np.ndarray:
    """Draw the picture of ``attributes`` (see the module docstring); uint8 ``[3, H, W]``."""
    s = image_size
    xf, yf = pixel_grid(s, supersample)
    xc, yc = pixel_grid(s, 1)
    # Background: a grey with a faint tint, a brightness gradient and one low-frequency wave.
    grey = rng.uniform(70, 185) + rng.uniform(-12, 12, size=3)
    ramp_dir = rng.uniform(0, 2 * np.pi)
    ramp = ((xc - s / 2) * math.cos(ramp_dir) + (yc - s / 2) * math.sin(ramp_dir)) / s
    k, a = rng.uniform(0.5, 1.5) * 2 * np.pi / s, rng.uniform(0, 2 * np.pi)
    wave = np.sin(k * (xc * math.cos(a) + yc * math.sin(a)) + rng.uniform(0, 2 * np.pi))
    background = grey + (ramp * rng.uniform(-40, 40) + wave * rng.uniform(-12, 12))[..., None]
    # The shape: its outline, then its fill (plain, or the named colour and its dark shade in a pattern).
    radius = rng.uniform(0.28, 0.42) * s
    margin = min(0.85 * radius, s / 2)
    cx, cy = (float(c) for c in rng.uniform(margin, s - margin, size=2))
    theta, aspect = rng.uniform(0, 2 * np.pi), rng.uniform(0.85, 1.15)
    dx, dy = xf - cx, yf - cy
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    u = (cos_t * dx + sin_t * dy) / radius
    v = (cos_t * dy - sin_t * dx) / (radius * aspect)
    outline = shape_mask(SHAPES[attributes.shape], u, v, rng)
    colour = np.asarray(COLOURS[COLOUR_NAMES[attributes.colour]], dtype=np.float64) + rng.uniform(-15, 15, 3)
    pattern = FILL_PATTERNS[FILLS[attributes.fill]]
    if pattern is None:
        dark = np.zeros((s, s))
    else:
        dark = box_downsample(outline & texture_mask(pattern, xf, yf, rng), s, supersample)
    alpha = box_downsample(outline, s, supersample)
    fill = colour * (1 - dark[..., None]) + DARK_SHADE * colour * dark[..., None]
    # ``fill`` is the colour where the shape is light and the shade where it is dark; outside the shape
    # ``dark`` is 0, so the blend below only mixes the outline's anti-aliased edge with the background.
    image = background * (1 - alpha[..., None]) + fill * alpha[..., None]
    light_dir = rng.uniform(0, 2 * np.pi)
    light = (
        1
        + rng.uniform(0, 0.25) * ((xc - s / 2) * math.cos(light_dir) + (yc - s / 2) * math.sin(light_dir)) / s
    )
    image = image * light[..., None] + rng.normal(0, rng.uniform(2, 8), size=(s, s, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(2, 0, 1)


class CaptionedPictures(Dataset):
    """Pictures of given attributes, drawn once and cached: items ``(uint8 [3, S, S], attributes [3])``.

    ``attributes``: one :class:`Attributes` per picture (the caller draws them); picture ``i`` uses the
    generator :func:`picture_rng` ``(seed, split, i)``. The rendered array is cached under ``cache_dir``
    (default ``$MMSSL_CACHE/procedural_image_text``), keyed by the seed, split, size and a hash of the
    attribute list.
    """

    def __init__(
        self,
        attributes: Sequence[Attributes],
        image_size: int = 32,
        split: str = "train",
        seed: int = 0,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> None:
        if split not in SPLIT_CODES:
            raise DataError(f"split must be one of {', '.join(SPLIT_CODES)}, got '{split}'")
        if image_size < 16 or not attributes:
            raise DataError(
                f"need image_size >= 16 and at least one picture, got {image_size}, {len(attributes)}"
            )
        self.image_size, self.split, self.seed = image_size, split, seed
        self.attributes = torch.tensor([a.as_tuple() for a in attributes], dtype=torch.long)  # [N, 3]
        self.cache_path: Path | None = None
        if use_cache:
            digest = _attributes_digest(self.attributes)
            name = f"v{RENDER_VERSION}_seed{seed}_{split}_n{len(attributes)}_px{image_size}_{digest}.npz"
            self.cache_path = (
                Path(cache_dir if cache_dir is not None else cache_folder("procedural_image_text")) / name
            )
        array = load_cached_images(
            self.cache_path, (len(self.attributes), 3, self.image_size, self.image_size)
        )
        if array is None:
            start = time.perf_counter()
            array = np.stack(
                [render_picture(a, picture_rng(seed, split, i), image_size) for i, a in enumerate(attributes)]
            )
            log.info("rendered %d captioned pictures in %.1fs", len(array), time.perf_counter() - start)
            save_cached_images(self.cache_path, array)
        self.images = torch.from_numpy(array)

    def __len__(self) -> int:
        return len(self.attributes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.attributes[index]


def _attributes_digest(attributes: torch.Tensor) -> str:
    return hashlib.sha1(attributes.numpy().tobytes()).hexdigest()[:12]
