"""Two clips of one video as the two views of the shared two-view core (CVRL, Qian et al., CVPR 2021).

CVRL (Sec. 3.1) turns a video into a positive pair by *temporal* and *spatial* augmentation:

1. temporal interval sampling: draw a distance ``d`` (frames between the two clips' starts) from a
   distribution over ``[0, D]`` that decreases with ``d`` (the paper's best is linear,
   ``P(d) ~ -d + c``: clips far apart in time share less content, so the invariance asked of them
   should be enforced less often), then the first clip's start uniformly in ``[0, F - span - d]``
   and the second clip ``d`` frames later;
2. temporally consistent spatial augmentation (Sec. 3.2): random resized crop, horizontal flip,
   colour jitter and grayscale, each drawn *once per clip* and applied to all of its frames (so the
   motion inside a clip is left intact), independently for the two clips.

Here ``D = min(max_distance, F - span)`` for a video of ``F`` frames and a clip span of
``(clip_len - 1) * frame_stride + 1`` frames (``max_distance`` None: no limit beyond the video); a video
shorter than one span gives two padded clips of the same frames (``d = 0``). ``interval: uniform``
draws ``d`` uniformly instead (the paper's ablation). ``c = D + 1`` so that the largest distance keeps
a non-zero probability.

The pretraining items are ``{"views": [clip1, clip2], "index": i}`` (float ``[T, 3, H, W]`` each), the
key every method of :mod:`mmssl.core.methods` reads, so SimCLR, MoCo and BYOL train a clip encoder
unchanged; the encoder's ``global`` output is the clip embedding. A recipe selects it with
``data: {views: two_clips, two_clips: {max_distance: 8}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from mmssl.data import SkippedWhileLoading
from mmssl.errors import DataError
from mmssl.modalities.video.clips import VideoClipDataset
from mmssl.modalities.video.sources import VideoSource
from mmssl.modalities.video.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    FrameSize,
    as_size,
    clip_span,
)

#: the named ways ``data.views`` can turn a video into pretraining items (None: one clip, ``clip`` key)
VIEW_NAMES: tuple[str, ...] = ("two_clips",)
INTERVALS: tuple[str, ...] = ("decreasing", "uniform")


def check_views(views: str | None) -> str | None:
    """``views`` itself (None for none), or a :class:`DataError` naming the valid choices."""
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in VIEW_NAMES:
        raise DataError(f"unknown data.views '{views}'; choose one of {', '.join(VIEW_NAMES)} or null")
    return views


def _check_range(values: Sequence[float], name: str, low: float, high: float | None = None) -> None:
    if (
        len(values) != 2
        or values[0] > values[1]
        or values[0] < low
        or (high is not None and values[1] > high)
    ):
        raise ValueError(f"{name} must be [min, max] with {low} <= min <= max, got {list(values)}")


@dataclass(frozen=True)
class TwoClipOptions:
    """``data.two_clips``: how the two clips of a video are drawn and augmented.

    max_distance: largest distance in source frames between the two clips' first frames (None: as far as
        the video allows). interval: ``decreasing`` (CVRL's linear ``P(d) ~ -d + c``) or ``uniform``.
    crop_scale / crop_ratio: area fraction and aspect ratio of the random resized crop (CVRL: area
        0.3-1, aspect 1/2-2). flip_prob: horizontal flip. jitter: ColorJitter's (brightness, contrast,
        saturation, hue), applied with ``jitter_prob``. grayscale_prob: random grayscale. Every draw is
        made once per clip (all its frames alike), independently for the two clips. CVRL also blurs;
        at the 64-px frames of the CPU recipes a blur kernel of 10% of the side removes most detail, so
        it is left out (as SimCLR does at 32 px).
    """

    max_distance: int | None = None
    interval: str = "decreasing"
    crop_scale: tuple[float, ...] = (0.3, 1.0)
    crop_ratio: tuple[float, ...] = (0.5, 2.0)
    flip_prob: float = 0.5
    jitter: tuple[float, ...] = (0.4, 0.4, 0.4, 0.1)
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2

    def __post_init__(self) -> None:
        if self.max_distance is not None and self.max_distance < 0:
            raise ValueError(f"max_distance must be >= 0 or null, got {self.max_distance}")
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got '{self.interval}'")
        _check_range(self.crop_scale, "crop_scale", 0.0, 1.0)
        _check_range(self.crop_ratio, "crop_ratio", 0.0)
        if len(self.jitter) != 4 or min(self.jitter) < 0 or self.jitter[3] > 0.5:
            raise ValueError(
                f"jitter is (brightness, contrast, saturation, hue >= 0, hue <= 0.5), got {list(self.jitter)}"
            )
        for name in ("flip_prob", "jitter_prob", "grayscale_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


#: the default ``data.two_clips`` section (frozen, so one shared instance is safe as a default argument)
TWO_CLIP_DEFAULTS = TwoClipOptions()


def max_clip_distance(num_frames: int, span: int, max_distance: int | None) -> int:
    """``D``: the largest start-to-start distance at which both clips fit in ``num_frames`` frames."""
    room = max(0, num_frames - span)
    return room if max_distance is None else min(room, int(max_distance))


def interval_probabilities(max_dist: int, interval: str = "decreasing") -> torch.Tensor:
    """``P(d)`` for ``d = 0..max_dist`` (float64, sums to 1): ``(max_dist + 1 - d)`` normalised
    (CVRL's linear decreasing distribution with ``c = D + 1``), or uniform."""
    if interval not in INTERVALS:
        raise DataError(f"unknown interval '{interval}'; choose one of {', '.join(INTERVALS)}")
    d = torch.arange(max_dist + 1, dtype=torch.float64)
    weights = (max_dist + 1 - d) if interval == "decreasing" else torch.ones_like(d)
    return weights / weights.sum()


def sample_two_clip_indices(
    num_frames: int,
    clip_len: int,
    frame_stride: int = 1,
    max_distance: int | None = None,
    interval: str = "decreasing",
    generator: torch.Generator | None = None,
) -> tuple[list[int], list[int]]:
    """Frame indices of two clips of one video (see the module docstring): the second starts ``d``
    frames after the first, ``d ~ P(d)`` over ``0..D``. A video shorter than a span pads both clips
    by repeating its last frame (``d = 0``). ``generator``: None uses the global torch RNG (which
    the trainer seeds per sample)."""
    if clip_len < 1 or frame_stride < 1 or num_frames < 1:
        raise DataError(
            f"need clip_len, frame_stride and num_frames >= 1, got {clip_len}, {frame_stride}, {num_frames}"
        )
    span = clip_span(clip_len, frame_stride)
    max_dist = max_clip_distance(num_frames, span, max_distance)
    dist = int(torch.multinomial(interval_probabilities(max_dist, interval), 1, generator=generator))
    room = max(0, num_frames - span - dist)
    first = int(torch.randint(0, room + 1, (1,), generator=generator))

    def clip(start: int) -> list[int]:
        return [min(start + k * frame_stride, num_frames - 1) for k in range(clip_len)]

    return clip(first), clip(first + dist)


def clip_view_transform(
    frame_size: FrameSize,
    options: TwoClipOptions,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ClipTransform:
    """uint8 ``[T, H, W, 3]`` -> float ``[T, 3, h, w]``: crop, flip, jitter, grayscale, each drawn once
    per call and applied to every frame (``transforms.v2`` draws one set of parameters per Video)."""
    steps: list[Callable] = [
        v2.RandomResizedCrop(
            list(as_size(frame_size)),
            scale=tuple(options.crop_scale),
            ratio=tuple(options.crop_ratio),
            antialias=True,
        )
    ]
    if options.flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=options.flip_prob))
    if options.jitter_prob > 0 and any(options.jitter):
        b, c, s, h = options.jitter
        steps.append(v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=options.jitter_prob))
    if options.grayscale_prob > 0:
        steps.append(v2.RandomGrayscale(p=options.grayscale_prob))
    return ClipTransform(steps, mean, std)


class ClipPairViews:
    """``(clip1, clip2) -> [transform(clip1), transform(clip2)]``: independent draws per clip."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, pair: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        return [self.transform(clip) for clip in pair]


class TwoClipDataset(VideoClipDataset):
    """One item per source: ``((uint8 clip1, uint8 clip2), label)``, both clips decoded in one read.

    ``transform`` is not applied here (the two clips are augmented by the views wrapper); the other
    arguments are those of :class:`VideoClipDataset`.
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        clip_len: int,
        frame_stride: int,
        frame_size: FrameSize | None,
        options: TwoClipOptions,
        short: str = "pad",
        skip_bad: bool = False,
        backend: str = "decord",
        skipped: SkippedWhileLoading | None = None,
    ) -> None:
        super().__init__(
            sources,
            clip_len,
            frame_stride,
            "random",
            frame_size,
            None,
            short,
            skip_bad,
            backend=backend,
            skipped=skipped,
        )
        self.options = options

    def clip_indices(self, source: VideoSource) -> tuple[list[int], list[int]]:
        """The two clips' frame indices for ``source`` (``short="error"`` has already refused videos
        shorter than a clip when the dataset was built; ``"pad"`` repeats the last frame)."""
        return sample_two_clip_indices(
            source.num_frames,
            self.clip_len,
            self.frame_stride,
            self.options.max_distance,
            self.options.interval,
        )

    def _labelled_clip(self, index: int) -> tuple[Any, int]:
        source = self.sources[index]
        first, second = self.clip_indices(source)
        frames = self.read_frames(source, first + second)  # one decode for both clips
        return (frames[: len(first)], frames[len(first) :]), source.label


__all__ = [
    "INTERVALS",
    "TWO_CLIP_DEFAULTS",
    "VIEW_NAMES",
    "ClipPairViews",
    "TwoClipDataset",
    "TwoClipOptions",
    "check_views",
    "clip_view_transform",
    "interval_probabilities",
    "max_clip_distance",
    "sample_two_clip_indices",
]
