"""Clip sampling and clip transforms: which frames make a clip, and how a clip is cropped.

A clip is ``clip_len`` frames taken every ``frame_stride`` frames, so it spans
``(clip_len - 1) * frame_stride + 1`` source frames:

- ``"random"``: the start is uniform over every position where the span fits (pretraining);
- ``"uniform"``: the span is centred in the video (deterministic; evaluation).

A video shorter than the span is either padded by repeating its last frame (``short="pad"``, the
default) or rejected with a :class:`~mmssl.errors.DataError` (``short="error"``).

Clip transforms take uint8 ``[T, H, W, 3]`` and return float32 ``[T, 3, h, w]`` normalised with the
ImageNet statistics of :mod:`mmssl.modalities.image.views`. Spatial randomness (crop box, flip) is
drawn once per clip and applied to every frame (``torchvision.tv_tensors.Video`` does exactly that),
so motion inside the clip is left intact, as in CRW and DPC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from mmssl.errors import DataError
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD

SAMPLING_MODES: tuple[str, ...] = ("random", "uniform")
SHORT_POLICIES: tuple[str, ...] = ("pad", "error")

FrameSize = int | Sequence[int]


def clip_span(clip_len: int, frame_stride: int = 1) -> int:
    """Number of source frames a clip covers, first to last inclusive."""
    return (clip_len - 1) * frame_stride + 1


def sample_clip_indices(
    num_frames: int,
    clip_len: int,
    frame_stride: int = 1,
    sampling: str = "uniform",
    *,
    short: str = "pad",
    generator: torch.Generator | None = None,
    where: str = "video",
) -> list[int]:
    """Frame indices of one clip (see the module docstring).

    ``generator``: torch RNG for ``"random"`` (None: the global one, which DataLoader seeds per
    worker). ``where`` names the video in errors.
    """
    if sampling not in SAMPLING_MODES:
        raise DataError(f"unknown sampling '{sampling}'; choose one of {', '.join(SAMPLING_MODES)}")
    if short not in SHORT_POLICIES:
        raise DataError(f"unknown short-video policy '{short}'; choose one of {', '.join(SHORT_POLICIES)}")
    if clip_len < 1 or frame_stride < 1:
        raise DataError(f"clip_len and frame_stride must be >= 1, got {clip_len}, {frame_stride}")
    if num_frames < 1:
        raise DataError(f"{where} has no frames")
    span = clip_span(clip_len, frame_stride)
    slack = num_frames - span
    if slack < 0:
        if short == "error":
            raise DataError(
                f"{where} has {num_frames} frames; a clip of {clip_len} frames at stride {frame_stride} "
                f"needs {span} (use short='pad' to repeat the last frame, or a shorter clip/stride)"
            )
        start = 0
    elif sampling == "random":
        start = int(torch.randint(0, slack + 1, (1,), generator=generator))
    else:
        start = slack // 2
    return [min(start + k * frame_stride, num_frames - 1) for k in range(clip_len)]


def as_size(frame_size: FrameSize) -> tuple[int, int]:
    """``64`` -> ``(64, 64)``; ``(h, w)`` stays."""
    if isinstance(frame_size, int):
        return (frame_size, frame_size)
    size = tuple(int(s) for s in frame_size)
    if len(size) != 2:
        raise DataError(f"frame_size must be an int or (height, width), got {frame_size}")
    return size  # type: ignore[return-value]


def decode_size(height: int, width: int, frame_size: FrameSize, upscale: bool = False) -> tuple[int, int]:
    """Size to bring a ``height x width`` frame to before cropping to ``frame_size``: aspect ratio
    kept, scaled so the frame just covers the output; never larger than the source unless ``upscale``."""
    out_h, out_w = as_size(frame_size)
    scale = max(out_h / height, out_w / width)
    scale = scale if upscale else min(1.0, scale)
    if scale == 1.0:
        return (height, width)
    # max(): rounding must not leave the frame a pixel short of the crop.
    return (max(out_h, round(height * scale)), max(out_w, round(width * scale)))


class ClipTransform:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, h, w]`` via a ``transforms.v2`` pipeline on a Video."""

    def __init__(
        self,
        spatial: Sequence[Callable],
        mean: Sequence[float],
        std: Sequence[float],
        cover: FrameSize | None = None,
    ) -> None:
        self.cover = as_size(cover) if cover is not None else None
        self.pipeline = v2.Compose(
            [
                *spatial,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean=list(mean), std=list(std)),
                v2.ToPureTensor(),
            ]
        )

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"clip transform expects uint8 [T, H, W, 3], got {tuple(frames.shape)}")
        video = frames.permute(0, 3, 1, 2)
        if self.cover is not None:  # resize (aspect kept) until the frame just covers the output size
            target = decode_size(video.shape[-2], video.shape[-1], self.cover, upscale=True)
            if target != tuple(video.shape[-2:]):
                video = v2.functional.resize(video, list(target), antialias=True)
        return self.pipeline(tv_tensors.Video(video))


def eval_clip_transform(
    frame_size: FrameSize, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> ClipTransform:
    """Deterministic: resize (aspect kept) so the frame just covers ``frame_size``, centre crop."""
    size = list(as_size(frame_size))
    return ClipTransform([v2.CenterCrop(size)], mean, std, cover=size)


def train_clip_transform(
    frame_size: FrameSize,
    crop_scale: Sequence[float] = (0.4, 1.0),
    flip_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ClipTransform:
    """Random resized crop (area fraction ``crop_scale``) and horizontal flip, one draw per clip.

    No colour jitter: methods that need per-frame or per-view photometric changes (e.g. DPC, CRW's
    patch jitter) add them on top of the clip.
    """
    size = list(as_size(frame_size))
    steps: list[Callable] = [v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True)]
    if flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=flip_prob))
    return ClipTransform(steps, mean, std)
