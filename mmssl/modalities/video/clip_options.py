"""The clip options every video dataset builder shares, and the datasets they make.

- pretraining: ``{"clip": float32 [T, 3, H, W], "label": int (-1 without classes), "index": int}``
  (random clip position, random resized crop + flip shared by the clip's frames);
- pretraining with ``views: two_clips``: ``{"views": [clip1, clip2], "index": int}``, two clips of one
  video for the two-view methods (:mod:`mmssl.modalities.video.two_clips`);
- evaluation: ``{"input": float32 [T, 3, H, W], "label": int}`` (centred clip, resize + centre crop).

Both are the generic wrappers of :mod:`mmssl.data.wrappers` over a
:class:`~mmssl.modalities.video.clips.VideoClipDataset` that already transforms its clips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmssl.data import LabelledItems, MultiViewItems, SingleItems, SkipBadFiles, SkippedWhileLoading
from mmssl.data.keys import INDEX, LABEL, VIEWS
from mmssl.modalities.video.clips import VideoClipDataset
from mmssl.modalities.video.io import check_backend
from mmssl.modalities.video.keys import CLIP
from mmssl.modalities.video.sources import VideoSource
from mmssl.modalities.video.two_clips import (
    ClipPairViews,
    TwoClipDataset,
    TwoClipOptions,
    check_views,
    clip_view_transform,
)
from mmssl.modalities.video.views import (
    FrameSize,
    as_size,
    eval_clip_transform,
    sample_clip_indices,
    train_clip_transform,
)

log = logging.getLogger(__name__)


@dataclass
class ClipOptions:
    """How clips are cut from the sources (see the builders in :mod:`mmssl.modalities.video.datasets`)."""

    clip_len: int
    frame_stride: int
    frame_size: FrameSize
    sampling: str
    short: str
    skip_bad: bool
    crop_scale: Sequence[float]
    views: str | None = None
    two_clips: TwoClipOptions = field(default_factory=TwoClipOptions)
    backend: str = "decord"
    # files found bad while clips are decoded (in any worker); set by :meth:`track_skips`
    skipped: SkippedWhileLoading | None = None

    def track_skips(self, *source_lists: Sequence[VideoSource]) -> SkippedWhileLoading:
        """Share one record of the files skipped while decoding over every data set built from now on;
        the builder puts it in the bundle's ``extras`` so the run counts them in metrics.json."""
        self.skipped = SkippedWhileLoading(s.path for sources in source_lists for s in sources)
        return self.skipped

    def check(self) -> None:
        """The checks the sampler makes, up front: a typo fails at build time, not in a worker."""
        sample_clip_indices(1, 1, 1, self.sampling, short=self.short)
        check_backend(self.backend)
        self.views = check_views(self.views)

    def pretrain(self, sources: Sequence[VideoSource]) -> SingleItems | MultiViewItems:
        if self.views == "two_clips":
            pairs = TwoClipDataset(
                sources,
                self.clip_len,
                self.frame_stride,
                self.frame_size,
                self.two_clips,
                short=self.short,
                skip_bad=self.skip_bad,
                backend=self.backend,
                skipped=self.skipped,
            )
            return MultiViewItems(pairs, ClipPairViews(clip_view_transform(self.frame_size, self.two_clips)))
        transform = train_clip_transform(self.frame_size, crop_scale=self.crop_scale)
        return SingleItems(self._dataset(sources, self.sampling, transform), None, CLIP)

    def evaluation(self, sources: Sequence[VideoSource]) -> LabelledItems:
        return LabelledItems(self._dataset(sources, "uniform", eval_clip_transform(self.frame_size)))

    def _dataset(
        self, sources: Sequence[VideoSource], sampling: str, transform: Callable
    ) -> VideoClipDataset:
        return VideoClipDataset(
            sources,
            self.clip_len,
            self.frame_stride,
            sampling,
            self.frame_size,
            transform,
            short=self.short,
            skip_bad=self.skip_bad,
            backend=self.backend,
            skipped=self.skipped,
        )

    def stats(self) -> dict[str, Any]:
        return {
            "modality": "video",
            "clip_len": self.clip_len,
            "frame_stride": self.frame_stride,
            "frame_size": list(as_size(self.frame_size)),
            "sampling": self.sampling,
            "views": self.views,
            "backend": self.backend,
        }


def pretrain_keys(options: Mapping[str, Any]) -> set[str]:
    """The batch keys of a video dataset's pretraining items: ``views: two_clips`` gives two clips per
    video (``views``, ``index``); otherwise one clip with its label."""
    return {VIEWS, INDEX} if check_views(options["views"]) else {CLIP, LABEL, INDEX}


def skipped_stats(skipping: SkipBadFiles) -> dict[str, Any]:
    """``num_skipped`` / ``bad_files`` for ``DataBundle.stats`` (and one warning listing the first few)."""
    bad = skipping.bad_files
    if bad:
        log.warning("left out %d unreadable video(s): %s", len(bad), ", ".join(str(p) for p in bad[:5]))
    return {"num_skipped": len(bad), "bad_files": [str(p) for p in bad]}
