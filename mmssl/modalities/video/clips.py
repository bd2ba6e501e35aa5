"""The clip dataset: one sampled clip per scanned video source, decoded at the size it is needed.

Each item samples one clip (:mod:`mmssl.modalities.video.views`), decodes only its frames, already scaled
towards ``frame_size`` by the decoder, and transforms it. The batch contract is given by the generic
wrappers of :mod:`mmssl.data.wrappers` (see :mod:`mmssl.modalities.video.clip_options`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from mmssl.data import SkipBadFiles, SkippedWhileLoading
from mmssl.data.shards import ShardSamples
from mmssl.errors import DataError
from mmssl.modalities.video.io import read_frame_folder, read_video
from mmssl.modalities.video.sources import VideoSource
from mmssl.modalities.video.views import FrameSize, as_size, clip_span, decode_size, sample_clip_indices


class VideoClipDataset(Dataset):
    """One clip per source: ``(transform(uint8 [T, H, W, 3]), label)``.

    Frames are decoded at :func:`~mmssl.modalities.video.views.decode_size` (the source scaled to
    just cover ``frame_size``), then ``transform`` (None: the uint8 frames). A clip that fails to
    decode raises CorruptFileError naming the file; with ``skip_bad`` it is logged once and the next
    source's clip is returned (``num_skipped`` counts those seen by this process; ``skipped``, when given,
    records them for every process, and the run adds them to metrics.json).

    ``sources`` may also be a shard set's :class:`~mmssl.data.shards.ShardSamples` whose records decode to
    in-memory sources (:mod:`mmssl.modalities.video.shards`), read as they stream; there is nothing to
    substitute then, as ``make_shards.py`` decoded every record it wrote.

    That substitution is the one left in the toolkit, on purpose: the sources were scanned when the
    dataset was built (:func:`~mmssl.modalities.video.sources.scan_sources`: every file opened, its
    packet index compared with its header, so garbage and truncated files are already left out and
    listed in the bundle's ``stats``), but decoding every frame of every video up front to find the
    rare file whose frames fail in the middle would cost as much as a training epoch. Such a file is
    found only in a data-loader worker; its warning names it, and ``skipped`` (shared memory) carries it
    to the main process.
    """

    def __init__(
        self,
        sources: Sequence[VideoSource] | ShardSamples,
        clip_len: int,
        frame_stride: int = 1,
        sampling: str = "uniform",
        frame_size: FrameSize | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        short: str = "pad",
        skip_bad: bool = False,
        backend: str = "decord",
        skipped: SkippedWhileLoading | None = None,
    ) -> None:
        if not len(sources):
            raise DataError("no readable videos")
        # a shard set's samples are VideoSources decoded record by record, as they stream: kept as they are
        self.streamed = isinstance(sources, ShardSamples)
        self.sources = sources if self.streamed else list(sources)
        self.clip_len, self.frame_stride, self.sampling, self.short = clip_len, frame_stride, sampling, short
        self.frame_size = as_size(frame_size) if frame_size is not None else None
        self.transform = transform
        self.backend = backend
        self.skipping = SkipBadFiles(skip_bad, shared=skipped)
        if self.streamed:  # nothing to list up front; a record that fails names its shard and key
            self.targets, self.paths, self.where = [], [], str(sources.manifest.root)
            return
        self.targets: list[int] = [s.label for s in self.sources]
        self.paths = [s.path for s in self.sources]
        self.where = os.path.commonpath([str(p) for p in self.paths])
        if short == "error":  # fail now, naming the video, rather than in a data-loader worker later
            span = clip_span(clip_len, frame_stride)
            for s in self.sources:
                if s.num_frames < span:
                    sample_clip_indices(
                        s.num_frames, clip_len, frame_stride, short="error", where=str(s.path)
                    )

    @property
    def num_skipped(self) -> int:
        return self.skipping.num_skipped

    def __len__(self) -> int:
        return len(self.sources)

    def read_clip(self, source: VideoSource) -> torch.Tensor:
        """uint8 ``[T, h, w, 3]``: one sampled clip of ``source`` at its decode size."""
        idx = sample_clip_indices(
            source.num_frames,
            self.clip_len,
            self.frame_stride,
            self.sampling,
            short=self.short,
            where=str(source.path),
        )
        return self.read_frames(source, idx)

    def read_frames(self, source: VideoSource, idx: list[int]) -> torch.Tensor:
        """uint8 ``[len(idx), h, w, 3]``: frames ``idx`` of ``source`` at its decode size."""
        size = None
        if self.frame_size is not None:
            size = decode_size(source.height, source.width, self.frame_size)
            size = None if size == (source.height, source.width) else size
        if source.kind == "frames":
            return read_frame_folder(source.path, idx, size=size)
        return read_video(source.path, idx, size=size, backend=self.backend, data=source.data)

    def _labelled_clip(self, index: int) -> tuple[torch.Tensor, int]:
        source = self.sources[index]
        return self.read_clip(source), source.label

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if self.streamed:  # no substitution in a stream: make_shards.py decoded every record it wrote
            clip, label = self._labelled_clip(index)
        else:
            clip, label = self.skipping.next_readable(index, self.paths, self._labelled_clip, self.where)
        return (self.transform(clip) if self.transform is not None else clip), label
