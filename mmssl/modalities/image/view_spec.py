"""The one specification of image augmentation views, read by the per-sample and the batched pipelines.

A :class:`ViewSpec` holds every number of one augmentation pipeline (crop -> flip -> colour jitter ->
grayscale -> Gaussian blur -> solarize; normalisation is fixed, see :mod:`views`). A named preset is a
tuple of specs, one per view; both :mod:`views` (``transforms.v2`` per sample, in the data-loader
workers) and :mod:`batch_views` (whole batches on the training device) build their pipelines from it,
so the two cannot disagree.

Presets (per view; jitter = brightness, contrast, saturation, hue; all with a horizontal flip p=0.5
and blur sigma ~ U[0.1, 2.0]):

- ``simclr`` (Chen et al., ICML 2020, appendix A): crop area 0.08-1, jitter (0.8s, 0.8s, 0.8s, 0.2s)
  with strength s = 1 and p=0.8, grayscale p=0.2, blur p=0.5; both views alike.
- ``moco_v2`` (Chen et al., 2020, "Improved baselines with momentum contrastive learning", "aug+"):
  crop area 0.2-1, jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, blur p=0.5; both views alike.
- ``byol`` (Grill et al., NeurIPS 2020, table 6): crop area 0.08-1, jitter (0.4, 0.4, 0.2, 0.1) p=0.8,
  grayscale p=0.2; view 1 blur p=1.0, solarize p=0.0; view 2 blur p=0.1, solarize p=0.2.
- ``mae`` (He et al., CVPR 2022, appendix A.1): one view, crop area 0.2-1 and flip only (masking is the
  augmentation).

Small images: at or below :data:`SMALL_IMAGE_SIZE` px, SimCLR's own CIFAR-10 setting (Chen et al.,
appendix B.9) and solo-learn's CIFAR BYOL configuration drop the blur (at 32 px a 3-pixel blur destroys
much of the signal), while solo-learn's CIFAR SimCLR and MoCo v2+ configurations keep it at p = 0.5
(``scripts/pretrain/cifar/augmentations/symmetric*.yaml``). mmssl follows the SimCLR paper:
:func:`resolve_views` sets every view's blur probability to 0 there unless ``ViewOptions.blur`` says
otherwise (the CIFAR-10 GPU profiles of SimCLR and MoCo v2+ set ``blur: true`` to match solo-learn).

A recipe changes a preset with ``data.view_options`` (:class:`ViewOptions`): each field set there
replaces that field in every view of the preset, e.g.
``data: {views: simclr, view_options: {crop_scale: [0.2, 1.0], jitter_strength: 0.5}}``.

Multi-crop (Caron et al., NeurIPS 2020, "SwAV", Sec. 3.2): ``view_options.small_crops: V`` appends V
low-resolution views to a two-view preset, each the preset's first view with a smaller crop area
(``small_crop_scale``, SwAV's 0.05-0.14) resized to ``small_crop_size`` px (SwAV's 96 px for 224 px
views, the same ratio by default). They add positives at a fraction of a full view's cost; the method
must take more than two views (SimCLR does, :func:`~mmssl.core.losses.multi_view_nt_xent`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

# At or below this side length the presets switch Gaussian blur off (see the module docstring).
SMALL_IMAGE_SIZE = 32
# SwAV's crop area range for its low-resolution views (Caron et al. 2020, Sec. 4 / appendix A).
SWAV_SMALL_CROP_SCALE: tuple[float, float] = (0.05, 0.14)


def blur_kernel_size(size: int) -> int:
    """About 10% of the image side, made odd, at least 3 (SimCLR appendix A).

    As SimCLR's code: ``radius = (size // 10) // 2``, ``kernel = 2 * radius + 1`` (23 at 224 px).
    """
    return max(3, 2 * ((size // 10) // 2) + 1)


def _floats(values: Sequence[float], length: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != length:
        raise ValueError(f"{name} takes {length} numbers, got {list(values)}")
    return out


def _check_prob(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


@dataclass(frozen=True)
class ViewSpec:
    """Every parameter of one augmentation view.

    crop_scale / crop_ratio: area fraction and aspect-ratio range of the random resized crop.
    flip_prob: horizontal flip. jitter: ColorJitter's (brightness, contrast, saturation, hue), applied
    with probability ``jitter_prob``. grayscale_prob, blur_prob (sigma ~ U[blur_sigma], kernel
    :func:`blur_kernel_size` of the output side), solarize_prob (threshold 0.5 on [0, 1] pixels).
    A probability of 0 leaves the step out. Sequences are stored as tuples of floats. ``size``: the
    output side in px; None (the presets) means the recipe's ``image_size`` (multi-crop's small views
    set their own).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    size: int | None = None

    def __post_init__(self) -> None:
        for name, length in (("crop_scale", 2), ("crop_ratio", 2), ("jitter", 4), ("blur_sigma", 2)):
            object.__setattr__(self, name, _floats(getattr(self, name), length, name))
        for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            object.__setattr__(self, name, float(getattr(self, name)))
            _check_prob(getattr(self, name), name)
        if not 0.0 <= self.jitter[3] <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {self.jitter[3]}")
        if min(self.jitter) < 0:
            raise ValueError(f"jitter strengths must be >= 0, got {list(self.jitter)}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high, got {list(self.crop_scale)}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {self.size}")

    def output_size(self, default: int) -> int:
        """The side of this view's output: ``size``, else the recipe's ``default``."""
        return default if self.size is None else self.size


# The presets give only what differs from ViewSpec's defaults, which are what SimCLR, MoCo v2 and BYOL
# share: aspect ratio 3/4-4/3, flip p=0.5, jitter p=0.8, grayscale p=0.2, blur sigma in [0.1, 2].
# SimCLR's colour-distortion strength s = 1 (its ImageNet setting): jitter (0.8s, 0.8s, 0.8s, 0.2s).
_SIMCLR_VIEW = ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), blur_prob=0.5)
_MOCO_V2_VIEW = ViewSpec(crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), blur_prob=0.5)
_BYOL_VIEWS = tuple(
    ViewSpec(crop_scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_prob=blur_p, solarize_prob=solarize_p)
    for blur_p, solarize_p in ((1.0, 0.0), (0.1, 0.2))
)
_MAE_VIEW = ViewSpec(crop_scale=(0.2, 1.0), jitter=(0.0, 0.0, 0.0, 0.0), jitter_prob=0.0, grayscale_prob=0.0)

#: named presets: one spec per view (see the module docstring for the papers)
VIEW_PRESETS: dict[str, tuple[ViewSpec, ...]] = {
    "simclr": (_SIMCLR_VIEW, _SIMCLR_VIEW),
    "moco_v2": (_MOCO_V2_VIEW, _MOCO_V2_VIEW),
    "byol": _BYOL_VIEWS,
    "mae": (_MAE_VIEW,),
}
#: presets giving two views per sample (``{"views": [v1, v2]}`` items)
VIEW_NAMES: tuple[str, ...] = tuple(name for name, specs in VIEW_PRESETS.items() if len(specs) > 1)
#: presets giving one augmented image per sample (``{"image": ...}`` items), e.g. for masked modelling
SINGLE_VIEW_NAMES: tuple[str, ...] = tuple(name for name, specs in VIEW_PRESETS.items() if len(specs) == 1)


@dataclass
class ViewOptions:
    """Recipe overrides of a preset (``data.view_options``); every field left unset keeps the preset.

    Each field of :class:`ViewSpec` set here replaces that field in every view of the preset. Two more:
    ``jitter_strength`` multiplies every view's jitter (SimCLR's colour-distortion strength ``s``: 1 on
    ImageNet, 0.5 in its CIFAR-10 experiments; on the ``simclr`` preset it gives
    (0.8s, 0.8s, 0.8s, 0.2s)), after ``jitter`` if both are set; ``blur`` switches Gaussian blur on or
    off in every view whatever the image size (unset: off at or below :data:`SMALL_IMAGE_SIZE` px),
    before ``blur_prob`` if both are set.

    Multi-crop (SwAV, Sec. 3.2): ``small_crops`` low-resolution views appended after the preset's views,
    each the first view's spec (after the fields above) with crop area ``small_crop_scale`` (default
    SwAV's 0.05-0.14) and side ``small_crop_size`` (default: the image size x 96 / 224, SwAV's ratio,
    rounded to a multiple of 8, at least 8: 16 px at 32, 96 at 224). Only for presets with two or more
    views.
    """

    crop_scale: list[float] | None = None
    crop_ratio: list[float] | None = None
    flip_prob: float | None = None
    jitter: list[float] | None = None
    jitter_strength: float | None = None
    jitter_prob: float | None = None
    grayscale_prob: float | None = None
    blur: bool | None = None
    blur_prob: float | None = None
    blur_sigma: list[float] | None = None
    solarize_prob: float | None = None
    small_crops: int = 0
    small_crop_size: int | None = None
    small_crop_scale: list[float] | None = None

    def __post_init__(self) -> None:
        if self.jitter_strength is not None and self.jitter_strength < 0:
            raise ValueError(f"jitter_strength must be >= 0, got {self.jitter_strength}")
        if self.small_crops < 0:
            raise ValueError(f"small_crops must be >= 0, got {self.small_crops}")
        if self.small_crops == 0 and (self.small_crop_size is not None or self.small_crop_scale is not None):
            raise ValueError("small_crop_size / small_crop_scale need small_crops > 0")
        if self.small_crop_scale is not None:
            ViewSpec(crop_scale=tuple(self.small_crop_scale))  # type: ignore[arg-type]
        if self.small_crop_size is not None:
            ViewSpec(size=self.small_crop_size)
        # Check the overrides on their own (lengths, ranges), so a bad value is named when the recipe loads.
        ViewSpec(**self.overrides())

    def overrides(self) -> dict[str, object]:
        """The :class:`ViewSpec` fields this sets."""
        spec_fields = {f.name for f in dataclasses.fields(ViewSpec)}
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in spec_fields and getattr(self, f.name) is not None
        }

    def apply(self, spec: ViewSpec) -> ViewSpec:
        """``spec`` with the fields set here replaced (``jitter_strength`` scales the jitter)."""
        spec = dataclasses.replace(spec, **self.overrides())
        if self.jitter_strength is not None:
            spec = dataclasses.replace(spec, jitter=tuple(j * self.jitter_strength for j in spec.jitter))
        return spec

    def small_crop_specs(self, first: ViewSpec, size: int) -> tuple[ViewSpec, ...]:
        """The ``small_crops`` multi-crop views for ``size`` px images, derived from the ``first`` view."""
        if self.small_crops == 0:
            return ()
        # SwAV's ratio, rounded to a multiple of 8 so encoders that halve the side three times still fit
        side = max(8, 8 * round(size * 12 / 224)) if self.small_crop_size is None else self.small_crop_size
        scale = tuple(self.small_crop_scale) if self.small_crop_scale is not None else SWAV_SMALL_CROP_SCALE
        small = dataclasses.replace(first, crop_scale=scale, size=side)
        return (small,) * self.small_crops


def resolve_views(name: str, size: int, options: ViewOptions | None = None) -> tuple[ViewSpec, ...]:
    """The specs of preset ``name`` for ``size`` px outputs: blur off for small images (unless
    ``options.blur`` says otherwise), then the recipe's overrides (see :class:`ViewOptions`)."""
    if name not in VIEW_PRESETS:
        raise ValueError(f"unknown view recipe '{name}'; available: {', '.join(VIEW_PRESETS)}")
    options = options or ViewOptions()
    specs = VIEW_PRESETS[name]
    if options.small_crops and len(specs) < 2:
        raise ValueError(f"small_crops (multi-crop) needs a preset with two or more views, not '{name}'")
    use_blur = size > SMALL_IMAGE_SIZE if options.blur is None else options.blur
    if not use_blur:
        specs = tuple(dataclasses.replace(spec, blur_prob=0.0) for spec in specs)
    specs = tuple(options.apply(spec) for spec in specs)
    return specs + options.small_crop_specs(specs[0], size)


__all__ = [
    "SINGLE_VIEW_NAMES",
    "SMALL_IMAGE_SIZE",
    "SWAV_SMALL_CROP_SCALE",
    "VIEW_NAMES",
    "VIEW_PRESETS",
    "ViewOptions",
    "ViewSpec",
    "blur_kernel_size",
    "resolve_views",
]
