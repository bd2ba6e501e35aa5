"""The built-in procedural pictures: shapes and textures drawn from a seeded generator.

One renderer serves every built-in set that needs pictures: the labelled image set
(:class:`ProceduralShapes`, also the semi-supervised pool), the audio-visual scenes and the moving sprites
of the procedural videos. A picture is a function of ``(class, generator)``; class = shape or texture,
colours are random (so colour alone never gives the class away), with an illumination ramp and sensor noise.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.cache import NPZ_ERRORS, cache_folder
from mmssl.errors import DataError

log = logging.getLogger(__name__)

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "ring",
    "cross",
    "spiral",
    "stripes",
    "checker",
    "dots",
)
# Bump when the drawing code changes, so stale caches are not reused.
RENDER_VERSION = 1
_SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
# Masks are drawn on a grid this many times finer than the image, then box-averaged: anti-aliased edges.
_SUPERSAMPLE = 3


def default_cache_dir() -> Path:
    """``$MMSSL_CACHE/procedural_shapes`` or ``~/.cache/mmssl/procedural_shapes``."""
    return cache_folder("procedural_shapes")


def random_colour(rng: np.random.Generator, away_from: Sequence[np.ndarray] = (), min_dist: float = 110.0):
    """A uniform RGB colour at least ``min_dist`` (Euclidean, 0-255 scale) from every colour given."""
    for _ in range(100):
        c = rng.uniform(0, 255, size=3)
        if all(np.linalg.norm(c - other) >= min_dist for other in away_from):
            return c
    return 255.0 - np.asarray(away_from[0])  # practically unreachable; the complement is far enough


def shape_mask(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a shape in its own frame: ``(u, v)`` scaled so the shape's radius is 1."""
    rho = np.hypot(u, v)
    if name == "circle":
        return rho <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "triangle":
        # Equilateral, circumradius 1.15: inside the three half-planes n_k . p <= apothem.
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        inside = np.ones_like(u, dtype=bool)
        for a in angles:
            inside &= u * np.cos(a) + v * np.sin(a) <= 0.575
        return inside
    if name == "star":
        # Five points. Fold the angle into one half-spike, |phi| <= 36 deg, where the edge runs from
        # the tip (1, 0) to the inner vertex at radius r_in and angle 36 deg; keep the origin side.
        r_in = rng.uniform(0.38, 0.5)
        half = np.pi / 5
        phi = np.abs(np.mod(np.arctan2(v, u), 2 * half) - half)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        ex, ey = r_in * np.cos(half) - 1.0, r_in * np.sin(half)
        return ex * py - ey * (px - 1.0) >= 0
    if name == "ring":
        return (rho <= 1.0) & (rho >= rng.uniform(0.5, 0.65))
    if name == "cross":
        w = rng.uniform(0.25, 0.35)
        return ((np.abs(u) <= w) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= w) & (np.abs(u) <= 1.0))
    if name == "spiral":
        # Archimedean spiral rho = (theta / 2pi + k) / turns: alternate arm / gap bands along rho.
        turns = rng.uniform(2.0, 2.8)
        chirality = 1.0 if rng.random() < 0.5 else -1.0
        phase = rho * turns - chirality * np.arctan2(v, u) / (2 * np.pi)
        return (rho <= 1.0) & (np.mod(phase, 1.0) < 0.5)
    raise ValueError(f"unknown shape '{name}'")


def texture_mask(name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a whole-image periodic texture at random angle, period and phase."""
    angle = rng.uniform(0, np.pi)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    u = x * cos_a + y * sin_a
    v = y * cos_a - x * sin_a
    if name == "stripes":
        period = rng.uniform(3.5, 7.0)
        return np.mod(u / period + rng.random(), 1.0) < 0.5
    if name == "checker":
        period = rng.uniform(3.0, 6.0)  # side of one square
        cells = np.floor(u / period + rng.random()) + np.floor(v / period + rng.random())
        return np.mod(cells, 2) == 0
    if name == "dots":
        period = rng.uniform(5.0, 8.0)
        radius = period * rng.uniform(0.22, 0.32)
        du = np.mod(u / period + rng.random(), 1.0) - 0.5
        dv = np.mod(v / period + rng.random(), 1.0) - 0.5
        return np.hypot(du, dv) * period <= radius
    raise ValueError(f"unknown texture '{name}'")


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)`` of a ``size * supersample`` grid, in image pixels."""
    coords = ((np.arange(size * supersample) + 0.5) / supersample).astype(np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    x.flags.writeable = y.flags.writeable = False  # shared between calls
    return x, y


def box_downsample(mask: np.ndarray, size: int, factor: int) -> np.ndarray:
    return mask.reshape(size, factor, size, factor).mean(axis=(1, 3))


def render_shape_image(
    label: int, rng: np.random.Generator, image_size: int = 32, supersample: int = _SUPERSAMPLE
) -> np.ndarray:
    """Draw one image of class ``SHAPE_CLASSES[label]``; returns uint8 ``[3, H, W]``.

    Shape classes: one object of random colour, size (radius 22-42% of the side), position,
    rotation and slight aspect change over a background of a different random colour with a
    colour gradient and low-frequency blotches. Texture classes: the periodic pattern covers the
    image in two random colours. All classes get a random illumination ramp and pixel noise, so
    colour says nothing about the class; shape and texture do.
    """
    name = SHAPE_CLASSES[label]
    s, ss = image_size, supersample
    xf, yf = pixel_grid(s, ss)  # fine grid for anti-aliased masks
    xc, yc = pixel_grid(s, 1)

    colour_a = random_colour(rng)
    colour_b = random_colour(rng, away_from=[colour_a])
    if name in ("stripes", "checker", "dots"):
        alpha = box_downsample(texture_mask(name, xf, yf, rng), s, ss)
        background = np.broadcast_to(colour_a, (s, s, 3)).astype(np.float64)
    else:
        radius = rng.uniform(0.22, 0.42) * s
        margin = min(0.8 * radius, s / 2)
        cx, cy = (float(c) for c in rng.uniform(margin, s - margin, size=2))
        theta = rng.uniform(0, 2 * np.pi)
        aspect = rng.uniform(0.85, 1.15)
        dx, dy = xf - cx, yf - cy
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        u = (cos_t * dx + sin_t * dy) / radius
        v = (cos_t * dy - sin_t * dx) / (radius * aspect)
        alpha = box_downsample(shape_mask(name, u, v, rng), s, ss)
        # Background: a gradient towards a nearby colour plus two low-frequency plane waves.
        ramp_dir = rng.uniform(0, 2 * np.pi)
        ramp = ((xc - s / 2) * np.cos(ramp_dir) + (yc - s / 2) * np.sin(ramp_dir)) / s + 0.5
        shift = rng.uniform(-50, 50, size=3)
        background = colour_a + ramp[..., None] * shift
        for _ in range(2):
            k = rng.uniform(0.5, 1.5) * 2 * np.pi / s
            a = rng.uniform(0, 2 * np.pi)
            wave = np.sin(k * (xc * np.cos(a) + yc * np.sin(a)) + rng.uniform(0, 2 * np.pi))
            background = background + wave[..., None] * rng.uniform(-20, 20, size=3)
    image = background * (1 - alpha[..., None]) + colour_b * alpha[..., None]
    # Illumination ramp (multiplicative) and sensor noise, the same recipe for every class.
    light_dir = rng.uniform(0, 2 * np.pi)
    light = (
        1 + rng.uniform(0, 0.3) * ((xc - s / 2) * np.cos(light_dir) + (yc - s / 2) * np.sin(light_dir)) / s
    )
    image = image * light[..., None] + rng.normal(0, rng.uniform(3, 12), size=(s, s, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one sample: a function of (seed, split, index) only."""
    return np.random.default_rng(
        np.random.SeedSequence([RENDER_VERSION, int(seed), _SPLIT_CODES[split], int(index)])
    )


def load_cached_images(path: Path | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A uint8 array of ``shape`` cached at ``path`` (an ``.npz``: its CRC-32 is checked as it is read),
    or None (no path, no file, unreadable, damaged or of another shape: the caller re-renders, and a
    warning names the file and says why)."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            array = z["images"]
    except NPZ_ERRORS as err:
        log.warning("ignoring unreadable cache %s (%s: %s); re-rendering", path, type(err).__name__, err)
        return None
    if array.shape != tuple(shape) or array.dtype != np.uint8:
        log.warning("ignoring cache %s with shape %s %s; re-rendering", path, array.shape, array.dtype)
        return None
    return array


def save_cached_images(path: Path | None, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (None: nothing); a failure only warns, the run goes on uncached."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader (another process) never sees a half-written file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=array)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write cache %s (%s); continuing without it", path, err)


class ProceduralShapes(Dataset):
    """Built-in labelled image dataset of shapes and textures, drawn procedurally.

    Sample ``i`` has label ``i % num_classes`` (classes balanced in every prefix) and is drawn from
    a generator seeded by ``(seed, split, i)``, so a sample does not depend on ``num_per_class``
    and train/test are disjoint draws. The rendered split is cached as ``.npz`` (CRC-32 checked when
    read: a damaged file is rendered again) under ``cache_dir`` (default: :func:`default_cache_dir`),
    keyed by every parameter.

    Items: ``(uint8 tensor [3, H, W], int label)``.
    """

    def __init__(
        self,
        num_per_class: int,
        image_size: int = 32,
        num_classes: int = 10,
        split: str = "train",
        seed: int = 0,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> None:
        if split not in _SPLIT_CODES:
            raise DataError(f"split must be one of {', '.join(_SPLIT_CODES)}, got '{split}'")
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise DataError(f"num_classes must be in [2, {len(SHAPE_CLASSES)}], got {num_classes}")
        if num_per_class < 1 or image_size < 8:
            raise DataError(f"need num_per_class >= 1 and image_size >= 8, got {num_per_class}, {image_size}")
        self.num_per_class, self.image_size, self.num_classes = num_per_class, image_size, num_classes
        self.split, self.seed = split, seed
        self.class_names: list[str] = list(SHAPE_CLASSES[:num_classes])
        n = num_per_class * num_classes
        self.cache_path: Path | None = None
        if use_cache:
            key = f"v{RENDER_VERSION}_seed{seed}_{split}_n{num_per_class}_k{num_classes}_px{image_size}.npz"
            self.cache_path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / key
        array = load_cached_images(self.cache_path, (n, 3, self.image_size, self.image_size))
        if array is None:
            start = time.perf_counter()
            array = self.render(n)
            log.info("rendered %d procedural images in %.1fs", n, time.perf_counter() - start)
            save_cached_images(self.cache_path, array)
        self.images = torch.from_numpy(array)  # uint8 [N, 3, H, W]
        self.labels = torch.arange(n) % num_classes
        self.targets: list[int] = self.labels.tolist()

    def render(self, n: int) -> np.ndarray:
        out = np.empty((n, 3, self.image_size, self.image_size), dtype=np.uint8)
        for i in range(n):
            rng = sample_rng(self.seed, self.split, i)
            out[i] = render_shape_image(i % self.num_classes, rng, self.image_size)
        return out

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]
