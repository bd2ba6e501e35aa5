"""A built-in video set: textured sprites moving over textured, panning backgrounds.

Every video has one main sprite (object 1) whose *motion pattern* is the video's class, and one or
more distractor sprites (objects 2..K) drifting in straight lines. Sprites are drawn back to front in
a random depth order, so they occlude one another (the main sprite too); all of them change scale
over time, and the background pans. Shapes, textures and colours are random in every class: a
single frame says little about the class, the motion says it all. Classes (main sprite):

- ``bounce``: constant velocity, reflected at the frame borders;
- ``orbit``: circular path around a point near the centre;
- ``zigzag``: straight travel with a sinusoidal sideways oscillation;
- ``zoom``: slow drift, strong periodic growth and shrinkage (scale x0.55 .. x1.45);
- ``spin``: slow drift, fast rotation of the (textured) sprite.

:func:`render_video` draws one video (frames, instance masks, and each object's full, un-occluded
mask). :func:`build_procedural_videos` writes a whole set once into a cache folder named after its
parameters, in two layouts read by the ordinary loaders::

    <dir>/videos/train/<class>/<name>.mp4          pretraining / few-shot support videos
    <dir>/videos/heldout/<class>/<name>.mp4        few-shot query videos, label propagation
    <dir>/DAVIS/JPEGImages/480p/<name>/00000.jpg   the same frames (JPEG q95)
    <dir>/DAVIS/Annotations/480p/<name>/00000.png  palette masks, 0 = background, 1..K = sprites
    <dir>/DAVIS/ImageSets/2017/{train,val}.txt     val = the held-out videos
    <dir>/meta.json                                parameters, class names, one record per video
    <dir>/checksums.sha256                         SHA-256 of every file above (mmssl.cache)

("480p" is the folder name the DAVIS layout uses; the frames are ``frame_size`` pixels.) Colour is
stored at full resolution (H.264 4:4:4, JPEG without chroma subsampling): 4:2:0 would smear the
small saturated textures by ~18 grey levels on average, against ~5 (mp4) and ~3 (JPEG) here. The set is
written into a temporary folder and renamed into place, so concurrent runs never see half a set; before
a set is used its files are checked against ``checksums.sha256`` (once per process), and a damaged set
(a file cut short, altered or missing) is logged, naming the file, and generated again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmssl.cache import cache_folder, verify_checksums, write_checksums
from mmssl.errors import DataError
from mmssl.modalities.video.io import write_palette_mask, write_video
from mmssl.procedural.shapes import random_colour, shape_mask, texture_mask

log = logging.getLogger(__name__)

VIDEO_CLASSES: tuple[str, ...] = ("bounce", "orbit", "zigzag", "zoom", "spin")
SPRITE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
SPRITE_TEXTURES: tuple[str, ...] = ("stripes", "checker", "dots")
# Bump when the rendering changes, so stale caches are not reused.
GENERATOR_VERSION = 2
DAVIS_RESOLUTION = "480p"


def default_cache_dir() -> Path:
    """``$MMSSL_CACHE/procedural_videos`` or ``~/.cache/mmssl/procedural_videos`` (same root as images)."""
    return cache_folder("procedural_videos")


@dataclass(frozen=True)
class ProceduralVideoSpec:
    """Everything the generated files depend on (the cache key)."""

    num_videos: int = 160
    num_frames: int = 20
    frame_size: int = 64
    num_classes: int = 4
    num_heldout: int = 40
    max_objects: int = 3
    fps: int = 8
    seed: int = 0

    def validate(self) -> None:
        if not 2 <= self.num_classes <= len(VIDEO_CLASSES):
            raise DataError(f"num_classes must be in [2, {len(VIDEO_CLASSES)}], got {self.num_classes}")
        if self.frame_size < 16 or self.frame_size % 2:
            raise DataError(f"frame_size must be even and >= 16, got {self.frame_size}")
        if self.num_frames < 2:
            raise DataError(f"num_frames must be >= 2, got {self.num_frames}")
        if not 1 <= self.max_objects <= 8:
            raise DataError(f"max_objects must be in [1, 8], got {self.max_objects}")
        if not self.num_classes <= self.num_heldout <= self.num_videos - self.num_classes:
            raise DataError(
                f"need num_classes <= num_heldout <= num_videos - num_classes (one video per class on each "
                f"side), got num_heldout={self.num_heldout}, num_videos={self.num_videos}"
            )

    def key(self) -> str:
        s = self
        return (
            f"v{GENERATOR_VERSION}_seed{s.seed}_n{s.num_videos}_h{s.num_heldout}_k{s.num_classes}"
            f"_t{s.num_frames}_px{s.frame_size}_o{s.max_objects}_fps{s.fps}"
        )

    @property
    def class_names(self) -> list[str]:
        return list(VIDEO_CLASSES[: self.num_classes])

    def label(self, index: int) -> int:
        """Classes interleave (``index % num_classes``), so every prefix and suffix is balanced."""
        return index % self.num_classes

    def split(self, index: int) -> str:
        """The last ``num_heldout`` videos are held out (balanced across classes when divisible)."""
        return "heldout" if index >= self.num_videos - self.num_heldout else "train"

    def name(self, index: int) -> str:
        return f"{index:04d}_{VIDEO_CLASSES[self.label(index)]}"


# --------------------------------------------------------------------------------------- motion


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold positions into [low, high] as a ball bouncing between two walls would be."""
    width = max(high - low, 1e-6)
    y = np.mod(x - low, 2 * width)
    return low + np.where(y > width, 2 * width - y, y)


@dataclass
class _Track:
    """Per-frame centre (x, y), radius and rotation of one sprite."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray


def _motion(kind: str, rng: np.random.Generator, t: np.ndarray, size: int, radius: float) -> _Track:
    """A sprite's track for one motion pattern; speeds scale with the frame size (64 px reference)."""
    unit = size / 64.0
    lo, hi = 0.35 * radius, size - 0.35 * radius  # centres may leave the frame a little, never far
    direction = rng.uniform(0, 2 * np.pi)
    dx, dy = math.cos(direction), math.sin(direction)
    x0, y0 = rng.uniform(0.3 * size, 0.7 * size, size=2)
    # Every sprite wobbles a bit in scale and turns slowly; the classes exaggerate one of these.
    wobble = 1 + 0.1 * np.sin(2 * np.pi * t / rng.uniform(10, 16) + rng.uniform(0, 2 * np.pi))
    angle = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * rng.uniform(0.0, 0.05) * t
    if kind in ("bounce", "distractor"):
        speed = (rng.uniform(1.8, 3.0) if kind == "bounce" else rng.uniform(0.6, 1.6)) * unit
        x, y = _reflect(x0 + speed * dx * t, lo, hi), _reflect(y0 + speed * dy * t, lo, hi)
    elif kind == "orbit":
        orbit = rng.uniform(0.16, 0.26) * size
        omega = rng.choice([-1, 1]) * rng.uniform(0.3, 0.5)
        phase = rng.uniform(0, 2 * np.pi)
        cx, cy = rng.uniform(0.42 * size, 0.58 * size, size=2)
        x, y = cx + orbit * np.cos(omega * t + phase), cy + orbit * np.sin(omega * t + phase)
    elif kind == "zigzag":
        speed = rng.uniform(1.0, 1.8) * unit
        amplitude = rng.uniform(0.1, 0.16) * size
        wave = amplitude * np.sin(2 * np.pi * t / rng.uniform(4.0, 6.0) + rng.uniform(0, 2 * np.pi))
        along = speed * (t - t[-1] / 2)  # centred on (x0, y0)
        x = _reflect(x0 + along * dx - wave * dy, lo, hi)
        y = _reflect(y0 + along * dy + wave * dx, lo, hi)
    elif kind in ("zoom", "spin"):
        speed = rng.uniform(0.1, 0.4) * unit
        x, y = _reflect(x0 + speed * dx * t, lo, hi), _reflect(y0 + speed * dy * t, lo, hi)
        if kind == "zoom":
            wobble = 1 + 0.45 * np.sin(2 * np.pi * t / rng.uniform(8, 12) + rng.uniform(0, 2 * np.pi))
        else:
            angle = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * rng.uniform(0.35, 0.6) * t
    else:
        raise ValueError(f"unknown motion '{kind}'")
    return _Track(np.asarray(x, float), np.asarray(y, float), radius * wobble, angle)


# -------------------------------------------------------------------------------------- drawing


@dataclass
class _Sprite:
    shape: str
    texture: str
    colours: tuple[np.ndarray, np.ndarray]
    shape_seed: int
    texture_seed: int
    base_radius: float
    track: _Track


def _sprite_layers(
    sprite: _Sprite, frame: int, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(boolean mask ``[H, W]``, RGB colours ``[N, 3]`` of its N pixels) of a sprite at one frame.

    Shape and texture live in the sprite's own rotating, scaling frame, so the texture moves with
    the sprite (trackable). Only the sprite's bounding box is evaluated (every shape lies within
    radius 1.2 of its centre).
    """
    tr = sprite.track
    reach = 1.2 * tr.radius[frame]
    height, width = x.shape
    c0, c1 = max(0, int(tr.x[frame] - reach)), min(width, int(tr.x[frame] + reach) + 2)
    r0, r1 = max(0, int(tr.y[frame] - reach)), min(height, int(tr.y[frame] + reach) + 2)
    mask = np.zeros(x.shape, dtype=bool)
    if c0 >= c1 or r0 >= r1:  # entirely outside the frame
        return mask, np.zeros((0, 3))
    cos_a, sin_a = math.cos(tr.angle[frame]), math.sin(tr.angle[frame])
    dx, dy = x[r0:r1, c0:c1] - tr.x[frame], y[r0:r1, c0:c1] - tr.y[frame]
    u = (cos_a * dx + sin_a * dy) / tr.radius[frame]
    v = (cos_a * dy - sin_a * dx) / tr.radius[frame]
    # The same seed every frame: shape parameters (star depth, ring width ...) stay fixed.
    inside = shape_mask(sprite.shape, u, v, np.random.default_rng(sprite.shape_seed))
    mask[r0:r1, c0:c1] = inside
    scale = sprite.base_radius
    pattern = texture_mask(
        sprite.texture, u[inside] * scale, v[inside] * scale, np.random.default_rng(sprite.texture_seed)
    )
    return mask, np.where(pattern[:, None], sprite.colours[0], sprite.colours[1])


def render_video(
    label: int, rng: np.random.Generator, num_frames: int = 20, frame_size: int = 64, max_objects: int = 3
) -> dict[str, np.ndarray]:
    """Draw one video of class ``VIDEO_CLASSES[label]``.

    Returns ``frames`` uint8 ``[T, S, S, 3]``, ``masks`` int64 ``[T, S, S]`` (id of the front-most
    sprite at each pixel, 0 = background), ``full_masks`` bool ``[K, T, S, S]`` (each sprite's whole
    shape, occluded parts included), ``depth`` (sprite ids from back to front) and ``background``
    uint8 ``[T, S, S, 3]`` (the frames without sprites).
    """
    s = frame_size
    t = np.arange(num_frames, dtype=np.float64)
    coords = np.arange(s, dtype=np.float64) + 0.5
    y, x = np.meshgrid(coords, coords, indexing="ij")

    # Background: a two-colour periodic texture (larger period than the sprites') panning at a
    # constant velocity, under a colour gradient.
    bg_colours = [random_colour(rng)]
    bg_colours.append(random_colour(rng, away_from=bg_colours, min_dist=60.0))
    bg_texture = SPRITE_TEXTURES[rng.integers(len(SPRITE_TEXTURES))]
    bg_seed = int(rng.integers(2**31))
    pan_dir = rng.uniform(0, 2 * np.pi)
    pan = rng.uniform(0.2, 0.8) * (s / 64.0) * np.array([math.cos(pan_dir), math.sin(pan_dir)])
    ramp_dir = rng.uniform(0, 2 * np.pi)
    ramp = ((x - s / 2) * math.cos(ramp_dir) + (y - s / 2) * math.sin(ramp_dir)) / s
    ramp = ramp[..., None] * rng.uniform(-40, 40, size=3)

    num_objects = int(rng.integers(min(2, max_objects), max_objects + 1))  # a distractor when allowed
    sprites = []
    for k in range(num_objects):
        radius = (rng.uniform(0.16, 0.22) if k == 0 else rng.uniform(0.09, 0.15)) * s
        c1 = random_colour(rng, away_from=bg_colours, min_dist=90.0)
        c2 = random_colour(rng, away_from=[*bg_colours, c1], min_dist=70.0)
        kind = VIDEO_CLASSES[label] if k == 0 else "distractor"
        sprites.append(
            _Sprite(
                shape=SPRITE_SHAPES[rng.integers(len(SPRITE_SHAPES))],
                texture=SPRITE_TEXTURES[rng.integers(len(SPRITE_TEXTURES))],
                colours=(c1, c2),
                shape_seed=int(rng.integers(2**31)),
                texture_seed=int(rng.integers(2**31)),
                base_radius=radius,
                track=_motion(kind, rng, t, s, radius),
            )
        )
    depth = rng.permutation(num_objects)  # sprite indices, back to front

    frames = np.empty((num_frames, s, s, 3), dtype=np.uint8)
    background = np.empty_like(frames)
    masks = np.zeros((num_frames, s, s), dtype=np.int64)
    full = np.zeros((num_objects, num_frames, s, s), dtype=bool)
    noise = rng.normal(0, 2.0, size=(num_frames, s, s, 3))
    for f in range(num_frames):
        ox, oy = pan * f
        # Coordinates scaled by 0.6: the background's period is 1.7x the sprites'.
        pattern = texture_mask(bg_texture, 0.6 * (x + ox), 0.6 * (y + oy), np.random.default_rng(bg_seed))
        image = np.where(pattern[..., None], bg_colours[0], bg_colours[1]) * 0.8 + 25 + ramp
        background[f] = np.clip(np.rint(image + noise[f]), 0, 255).astype(np.uint8)
        for k in depth:
            mask, colour = _sprite_layers(sprites[k], f, x, y)
            full[k, f] = mask
            image[mask] = colour
            masks[f][mask] = k + 1
        frames[f] = np.clip(np.rint(image + noise[f]), 0, 255).astype(np.uint8)
    return {
        "frames": frames,
        "masks": masks,
        "full_masks": full,
        "depth": depth + 1,
        "background": background,
    }


def video_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for video ``index``: a function of (version, seed, index) only."""
    return np.random.default_rng(np.random.SeedSequence([GENERATOR_VERSION, int(seed), int(index)]))


# ------------------------------------------------------------------------------------- the set


def _write_set(spec: ProceduralVideoSpec, out: Path) -> None:
    davis = out / "DAVIS"
    records = []
    for i in range(spec.num_videos):
        label, split, name = spec.label(i), spec.split(i), spec.name(i)
        video = render_video(
            label, video_rng(spec.seed, i), spec.num_frames, spec.frame_size, spec.max_objects
        )
        video_path = out / "videos" / split / spec.class_names[label] / f"{name}.mp4"
        write_video(video_path, video["frames"], spec.fps, chroma="444")
        frame_dir = davis / "JPEGImages" / DAVIS_RESOLUTION / name
        frame_dir.mkdir(parents=True)
        for f, (frame, mask) in enumerate(zip(video["frames"], video["masks"])):
            Image.fromarray(frame).save(frame_dir / f"{f:05d}.jpg", quality=95, subsampling=0)
            write_palette_mask(davis / "Annotations" / DAVIS_RESOLUTION / name / f"{f:05d}.png", mask)
        records.append(
            {"name": name, "label": label, "split": split, "num_objects": int(video["masks"].max())}
        )
    sets = davis / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    for split, file in (("train", "train.txt"), ("heldout", "val.txt")):
        (sets / file).write_text("".join(f"{r['name']}\n" for r in records if r["split"] == split))
    meta = {
        "spec": asdict(spec),
        "class_names": spec.class_names,
        "resolution": DAVIS_RESOLUTION,
        "videos": records,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def build_procedural_videos(spec: ProceduralVideoSpec, cache_dir: str | Path | None = None) -> Path:
    """The folder holding the set for ``spec`` (see the module docstring), generated on first use.

    The folder is ``<cache_dir>/<spec.key()>`` (``cache_dir`` default: :func:`default_cache_dir`).
    A folder without ``meta.json`` is incomplete, and one whose files differ from its
    ``checksums.sha256`` damaged: either is generated again (a warning names what was wrong).
    """
    spec.validate()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    final = root / spec.key()
    if (final / "meta.json").is_file():
        problem = _damage(final)
        if problem is None:
            return final
        log.warning("ignoring damaged procedural video set %s (%s); generating it again", final, problem)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.key()}.tmp-"))
    try:
        _write_set(spec, tmp)
        write_checksums(tmp)
        if final.exists() and _damage(final) is not None:
            # Incomplete (an interrupted older writer) or damaged: moved aside, then removed.
            stale = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.key()}.stale-"))
            os.rename(final, stale / "set")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if _damage(final) is not None:  # not another process's finished copy: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "generated %d procedural videos in %s (%.1fs)", spec.num_videos, final, time.perf_counter() - start
    )
    return final


def _damage(folder: Path) -> str | None:
    """What is wrong with a generated set (None: complete and intact)."""
    if not (folder / "meta.json").is_file():
        return f"no {folder / 'meta.json'}: incomplete"
    return verify_checksums(folder)


def load_meta(folder: str | Path) -> dict:
    """The ``meta.json`` of a generated set."""
    return json.loads((Path(folder) / "meta.json").read_text())
