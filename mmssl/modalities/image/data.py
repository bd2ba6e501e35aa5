"""Image data: a built-in procedural dataset, an ImageFolder reader, and the registered builders.

Base datasets (``ProceduralShapes``, ``ImageFolderDataset``) yield ``(uint8 tensor [3, H, W], label)``;
small wrappers turn them into what the toolkit's contracts expect:

- pretraining, two-view methods, ``augment="batch"`` (default): ``{"images": uint8 [3, S, S], "index": i}``
  per item, and the bundle's ``batch_transform``
  (:func:`~mmssl.modalities.image.batch_views.build_batch_views`) turns each batch into
  ``{"views": [v1, v2], "index": ...}`` on the training device;
- pretraining, two-view methods, ``augment="per_sample"``: ``{"views": [v1, v2], "index": i}`` per item
  (``transforms.v2`` in the data-loader workers);
- pretraining, single-image methods (``views=None``: rotation, MAE ...):
  ``{"image": tensor, "label": int, "index": i}``
- evaluation: ``{"input": tensor, "label": int}`` with the deterministic ``eval_transform``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from mmssl.cache import cache_folder
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE, INDEX, LABEL, VIEWS
from mmssl.data.source import data_source
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.batch_views import build_batch_views
from mmssl.modalities.image.views import (
    SINGLE_VIEW_NAMES,
    VIEW_NAMES,
    build_single_view,
    build_views,
    eval_transform,
)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ procedural shapes

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


def _random_colour(rng: np.random.Generator, away_from: Sequence[np.ndarray] = (), min_dist: float = 110.0):
    """A uniform RGB colour at least ``min_dist`` (Euclidean, 0-255 scale) from every colour given."""
    for _ in range(100):
        c = rng.uniform(0, 255, size=3)
        if all(np.linalg.norm(c - other) >= min_dist for other in away_from):
            return c
    return 255.0 - np.asarray(away_from[0])  # practically unreachable; the complement is far enough


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def _texture_mask(name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
def _pixel_grid(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)`` of a ``size * supersample`` grid, in image pixels."""
    coords = ((np.arange(size * supersample) + 0.5) / supersample).astype(np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    x.flags.writeable = y.flags.writeable = False  # shared between calls
    return x, y


def _box_downsample(mask: np.ndarray, size: int, factor: int) -> np.ndarray:
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
    xf, yf = _pixel_grid(s, ss)  # fine grid for anti-aliased masks
    xc, yc = _pixel_grid(s, 1)

    colour_a = _random_colour(rng)
    colour_b = _random_colour(rng, away_from=[colour_a])
    if name in ("stripes", "checker", "dots"):
        alpha = _box_downsample(_texture_mask(name, xf, yf, rng), s, ss)
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
        alpha = _box_downsample(_shape_mask(name, u, v, rng), s, ss)
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


class ProceduralShapes(Dataset):
    """Built-in labelled image dataset of shapes and textures, drawn procedurally.

    Sample ``i`` has label ``i % num_classes`` (classes balanced in every prefix) and is drawn from
    a generator seeded by ``(seed, split, i)``, so a sample does not depend on ``num_per_class``
    and train/test are disjoint draws. The rendered split is cached as ``.npy`` under
    ``cache_dir`` (default: :func:`default_cache_dir`), keyed by every parameter.

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
            key = f"v{RENDER_VERSION}_seed{seed}_{split}_n{num_per_class}_k{num_classes}_px{image_size}.npy"
            self.cache_path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / key
        array = self._load_cache(n)
        if array is None:
            start = time.perf_counter()
            array = self.render(n)
            log.info("rendered %d procedural images in %.1fs", n, time.perf_counter() - start)
            self._save_cache(array)
        self.images = torch.from_numpy(array)  # uint8 [N, 3, H, W]
        self.labels = torch.arange(n) % num_classes
        self.targets: list[int] = self.labels.tolist()

    def render(self, n: int) -> np.ndarray:
        out = np.empty((n, 3, self.image_size, self.image_size), dtype=np.uint8)
        for i in range(n):
            rng = sample_rng(self.seed, self.split, i)
            out[i] = render_shape_image(i % self.num_classes, rng, self.image_size)
        return out

    def _load_cache(self, n: int) -> np.ndarray | None:
        if self.cache_path is None or not self.cache_path.is_file():
            return None
        try:
            array = np.load(self.cache_path, allow_pickle=False)
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable cache %s (%s); re-rendering", self.cache_path, err)
            return None
        if array.shape != (n, 3, self.image_size, self.image_size) or array.dtype != np.uint8:
            log.warning("ignoring cache %s with shape %s; re-rendering", self.cache_path, array.shape)
            return None
        return array

    def _save_cache(self, array: np.ndarray) -> None:
        if self.cache_path is None:
            return
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: a reader (another process) never sees a half-written file.
            fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, self.cache_path)
        except OSError as err:
            log.warning("could not write cache %s (%s); continuing without it", self.cache_path, err)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


# ------------------------------------------------------------------------------------ ImageFolder

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` reader (classes = sorted sub-folder names).

    Items: ``(transform(img), label)`` where ``img`` is a uint8 RGB tensor ``[3, H, W]``
    (``transform=None`` returns it as is). A file PIL cannot decode raises
    :class:`~mmssl.errors.CorruptFileError` naming it; with ``skip_bad=True`` the reader logs a
    warning naming the file and returns the next readable sample instead (``num_skipped`` counts
    distinct bad files seen by this process; each DataLoader worker keeps its own count).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[torch.Tensor], Any] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        skip_bad: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        self.transform = transform
        self.skip_bad = skip_bad
        exts = tuple(e.lower() for e in extensions)
        self.classes: list[str] = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not self.classes:
            raise DataError(f"no class sub-folders in {self.root} (expected root/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in self.classes:
            files = sorted(p for p in (self.root / c).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            self.samples += [(p, self.class_to_idx[c]) for p in files]
        if not self.samples:
            raise DataError(f"no images with extensions {', '.join(exts)} under {self.root}")
        self.targets: list[int] = [label for _, label in self.samples]
        self.bad_files: set[Path] = set()

    @property
    def num_skipped(self) -> int:
        return len(self.bad_files)

    @staticmethod
    def load_image(path: Path) -> torch.Tensor:
        """Decode fully (``convert`` forces it, so truncated files fail here) to uint8 ``[3, H, W]``."""
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
        return TF.pil_to_tensor(rgb)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self.samples)
        for offset in range(n):
            path, label = self.samples[(index + offset) % n]
            try:
                img = self.load_image(path)
            except CorruptFileError as err:
                if not self.skip_bad:
                    raise
                if path not in self.bad_files:
                    self.bad_files.add(path)
                    log.warning("skipping %s", err)
                continue
            return (self.transform(img) if self.transform is not None else img), label
        raise DataError(f"no readable image under {self.root}: all {n} files failed to decode")


# ---------------------------------------------------------------------------- contract wrappers


class TwoViewDataset(Dataset):
    """``base[i] = (img, label)`` -> ``{"views": two_views(img), "index": i}`` (labels withheld)."""

    def __init__(self, base: Dataset, two_views: Callable[[Any], list[torch.Tensor]]) -> None:
        self.base, self.two_views = base, two_views

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, _ = self.base[index]
        return {"views": self.two_views(img), "index": index}


class ImageBatchDataset(Dataset):
    """``base[i] = (img, label)`` -> ``{"images": img, "index": i}`` with ``img`` uint8 ``[3, S, S]``
    (labels withheld), for batched augmentation after collation.

    Images whose size differs from ``S = image_size`` get the evaluation geometry: shorter side
    resized to ``S`` (antialiased), then the central ``S x S`` square, so images of any size stack
    into one batch. The random resized crop of the batched views then samples from that square:
    at most ``S x S`` source pixels, and nothing outside the centre square of a non-square image
    (the per-sample pipelines crop from the full-resolution image).
    """

    def __init__(self, base: Dataset, image_size: int) -> None:
        self.base, self.image_size = base, image_size

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, _ = self.base[index]
        s = self.image_size
        if tuple(img.shape[-2:]) != (s, s):
            img = TF.center_crop(TF.resize(img, s, antialias=True), [s, s])
        return {"images": img, "index": index}


class SingleImageDataset(Dataset):
    """``{"image": transform(img), "label": label, "index": i}``, for methods that build their own
    inputs from one image (rotation, masked modelling)."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, label = self.base[index]
        return {"image": self.transform(img), "label": int(label), "index": index}


class LabelledDataset(Dataset):
    """``{"input": transform(img), "label": label}``: the evaluation contract."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform
        self.targets: list[int] = list(getattr(base, "targets", []))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, label = self.base[index]
        return {"input": self.transform(img), "label": int(label)}


def _check_views(views: str | None) -> str | None:
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in VIEW_NAMES + SINGLE_VIEW_NAMES:
        names = ", ".join(VIEW_NAMES + SINGLE_VIEW_NAMES)
        raise DataError(f"unknown views '{views}'; choose one of {names} or null")
    return views


AUGMENT_MODES: tuple[str, ...] = ("batch", "per_sample")


def _check_augment(augment: str) -> str:
    if augment not in AUGMENT_MODES:
        raise DataError(f"unknown augment '{augment}'; choose one of {', '.join(AUGMENT_MODES)}")
    return augment


def _pretrain_dataset(
    base: Dataset, views: str | None, image_size: int, augment: str
) -> tuple[Dataset, Callable[[Any], Any] | None]:
    """The pretraining dataset and the bundle's ``batch_transform`` (None: items are final)."""
    if views is None:
        return SingleImageDataset(base, eval_transform(image_size)), None
    if views in SINGLE_VIEW_NAMES:  # one augmented image per sample (masked image modelling)
        return SingleImageDataset(base, build_single_view(views, image_size)), None
    if augment == "batch":
        return ImageBatchDataset(base, image_size), build_batch_views(views, image_size)
    return TwoViewDataset(base, build_views(views, image_size)), None


# ---------------------------------------------------------------------------------- builders


def pretrain_keys(options: Mapping[str, Any]) -> set[str]:
    """Two-view recipes get ``views`` (+ ``index``); single-image ones (``views`` null or a single-view
    name such as ``mae``) get one ``image`` per sample with its ``label`` and ``index``."""
    views = _check_views(options["views"])
    if views is None or views in SINGLE_VIEW_NAMES:
        return {IMAGE, LABEL, INDEX}
    return {VIEWS, INDEX}


@data_source(produces=pretrain_keys)
def procedural_shapes(
    views: str | None = "simclr",
    image_size: int = 32,
    num_classes: int = 10,
    train_per_class: int = 500,
    test_per_class: int = 100,
    seed: int = 0,
    cache_dir: str | None = None,
    augment: str = "batch",
) -> DataBundle:
    """Built-in shapes-and-textures images (see :class:`ProceduralShapes`); no download.

    ``views``: two-view recipe for pretraining (``simclr``, ``moco_v2``, ``byol``), a one-image
    recipe (``mae``: crop + flip) or null (no augmentation), the last two giving single images
    ``{"image", "label", "index"}``. Pretraining and ``eval_train`` use the same train images;
    ``eval_test`` is a disjoint test draw. ``cache_dir``: where rendered splits are stored
    (default ``$MMSSL_CACHE/procedural_shapes`` or ``~/.cache/mmssl/procedural_shapes``).
    ``augment``: ``"batch"`` (pretraining items are uint8 images; the bundle's ``batch_transform``
    makes both views of a whole batch on the training device) or ``"per_sample"`` (each item's views
    are made by ``transforms.v2`` in the data-loader workers). Ignored for single images.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    common = dict(image_size=image_size, num_classes=num_classes, seed=seed, cache_dir=cache_dir)
    train = ProceduralShapes(train_per_class, split="train", **common)  # type: ignore[arg-type]
    test = ProceduralShapes(test_per_class, split="test", **common)  # type: ignore[arg-type]
    evaluation = eval_transform(image_size)
    pretrain, batch_transform = _pretrain_dataset(train, views, image_size, augment)
    return DataBundle(
        pretrain=pretrain,
        eval_train=LabelledDataset(train, evaluation),
        eval_test=LabelledDataset(test, evaluation),
        num_classes=num_classes,
        batch_transform=batch_transform,
        info={
            "modality": "image",
            "dataset": "procedural_shapes",
            "class_names": train.class_names,
            "image_size": image_size,
            "views": views,
            "augment": augment if views in VIEW_NAMES else None,
            "num_train": len(train),
            "num_test": len(test),
        },
    )


@data_source(produces=pretrain_keys)
def image_folder(
    root: str,
    views: str | None = "simclr",
    image_size: int = 32,
    train_subdir: str = "train",
    test_subdir: str = "test",
    skip_bad: bool = False,
    augment: str = "batch",
    seed: int = 0,
) -> DataBundle:
    """Real images in ``root/<train_subdir>/<class>/*`` and ``root/<test_subdir>/<class>/*``.

    ``views`` and ``augment`` as for ``procedural_shapes``. Evaluation images are resized (shorter
    side) and centre-cropped to ``image_size``. Pretraining with ``augment="per_sample"`` takes the
    random resized crop from the full-resolution image; with ``augment="batch"`` images are first
    resized and centre-cropped to ``image_size`` (where their size differs) so that they stack into
    a batch, and the crop is taken from that square (see :class:`ImageBatchDataset`).
    ``skip_bad``: skip undecodable files with a warning instead of raising
    :class:`~mmssl.errors.CorruptFileError`.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"image_folder root not found: {base}")
    train = ImageFolderDataset(base / train_subdir, skip_bad=skip_bad)
    test = ImageFolderDataset(base / test_subdir, skip_bad=skip_bad)
    if train.classes != test.classes:
        raise DataError(
            f"class folders differ between {base / train_subdir} ({', '.join(train.classes)}) "
            f"and {base / test_subdir} ({', '.join(test.classes)})"
        )
    evaluation = eval_transform(image_size)
    pretrain, batch_transform = _pretrain_dataset(train, views, image_size, augment)
    return DataBundle(
        pretrain=pretrain,
        eval_train=LabelledDataset(train, evaluation),
        eval_test=LabelledDataset(test, evaluation),
        num_classes=len(train.classes),
        batch_transform=batch_transform,
        info={
            "modality": "image",
            "dataset": "image_folder",
            "root": str(base),
            "class_names": train.classes,
            "image_size": image_size,
            "views": views,
            "augment": augment if views in VIEW_NAMES else None,
            "num_train": len(train),
            "num_test": len(test),
        },
    )
