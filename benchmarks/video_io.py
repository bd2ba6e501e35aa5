"""Clip-loading throughput: mmssl's video dataset (and DataLoader) vs bare decord on the same files.

Prints decoded frames/s (clips x ``--clip-len``) for two sets of files:

- ``procedural``: the built-in procedural videos (64 px H.264 mp4, 20 frames each; generated into the
  cache on first use);
- ``real 720p``: ``shared/data/video/short_clips/squirrel*.mp4`` (H.264 1280x720, 250 frames), when present.

Rows, each reading ``--clips`` clips of ``--clip-len`` frames at stride ``--stride`` at random positions:

- bare decord, ``VideoReader(path)`` (its default threads, i.e. all cores) + ``get_batch``, full size;
- the same with ``num_threads=1``;
- bare decord scaled in the decoder (``width``/``height`` so the short side is ``--frame-size``), 1 thread;
- ``read_video`` (mmssl, same scaling, 1 thread);
- ``VideoClipDataset[i]``: sampling + scaled decode + random resized crop + flip + normalise, in-process;
- the same four with TorchCodec (``data.backend: torchcodec``): bare ``VideoDecoder`` full size and
  scaled in the decoder (``transforms=[Resize]``), ``read_video(backend="torchcodec")``, the dataset item;
- the same through a ``DataLoader`` with ``--workers`` workers and batches of ``--batch-size``.

Run: ``python benchmarks/video_io.py [--quick]`` (a few minutes on 2 busy cores, most of it in the 720p
column: every clip opens the file and decodes from the previous key frame; ``--quick`` tests the
script in well under a minute, plus the one-off generation of the procedural set).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import decord
import torch
from torch.utils.data import DataLoader

from mmssl.data import SingleItems
from mmssl.modalities.video.clips import VideoClipDataset
from mmssl.modalities.video.io import read_video
from mmssl.modalities.video.keys import CLIP
from mmssl.modalities.video.procedural import ProceduralVideoSpec, build_procedural_videos
from mmssl.modalities.video.sources import scan_sources
from mmssl.modalities.video.views import decode_size, sample_clip_indices, train_clip_transform

REAL_CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video" / "short_clips"


def clip_plan(sources, clips: int, clip_len: int, stride: int, seed: int = 0) -> list[tuple]:
    """The same (source, frame indices) list for every bare reader: random clips, round-robin over files."""
    gen = torch.Generator().manual_seed(seed)
    plan = []
    for i in range(clips):
        s = sources[i % len(sources)]
        plan.append((s, sample_clip_indices(s.num_frames, clip_len, stride, "random", generator=gen)))
    return plan


def frames_per_s(fn: Callable[[int], int], clips: int) -> float:
    """``fn(n)`` reads ``n`` clips and returns the frames decoded; timed after a 2-clip warm-up."""
    fn(2)
    start = time.perf_counter()
    frames = fn(clips)
    return frames / (time.perf_counter() - start)


def bare_decord(plan, threads: int, size: tuple[int, int] | None = None) -> Callable[[int], int]:
    h, w = size if size is not None else (-1, -1)

    def run(n: int) -> int:
        frames = 0
        for source, idx in plan[:n]:
            vr = decord.VideoReader(str(source.path), num_threads=threads, width=w, height=h)
            frames += vr.get_batch(idx).asnumpy().shape[0]
        return frames

    return run


def bare_torchcodec(plan, threads: int, size: tuple[int, int] | None = None) -> Callable[[int], int]:
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    def run(n: int) -> int:
        frames = 0
        for source, idx in plan[:n]:
            transforms = [Resize(size)] if size is not None else None
            decoder = VideoDecoder(str(source.path), num_ffmpeg_threads=threads, transforms=transforms)
            frames += decoder.get_frames_at(idx).data.shape[0]
        return frames

    return run


def mmssl_read(plan, frame_size: int, backend: str = "decord") -> Callable[[int], int]:
    def run(n: int) -> int:
        frames = 0
        for source, idx in plan[:n]:
            size = decode_size(source.height, source.width, frame_size)
            frames += read_video(source.path, idx, size=size, backend=backend).shape[0]
        return frames

    return run


def dataset(sources, args, backend: str = "decord") -> SingleItems:
    transform = train_clip_transform(args.frame_size)
    clips = VideoClipDataset(
        sources, args.clip_len, args.stride, "random", args.frame_size, transform, backend=backend
    )
    return SingleItems(clips, None, CLIP)


def dataset_items(sources, args, backend: str = "decord") -> Callable[[int], int]:
    ds = dataset(sources, args, backend)

    def run(n: int) -> int:
        for i in range(n):
            ds[i % len(ds)]
        return n * args.clip_len

    return run


def loader_items(sources, args) -> Callable[[int], int]:
    ds = dataset(sources, args)
    # One persistent loader over an endless sampler: worker start-up is paid in the warm-up call, as
    # in training. At least 2 x (workers x prefetch) batches are timed, so that the batches the
    # workers had prefetched when timing starts inflate the figure by a small fraction only.
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10**7)
    loader = DataLoader(
        ds, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers, persistent_workers=True
    )
    it = iter(loader)

    def run(n: int) -> int:
        batches = 1 if n <= 2 else max(-(-n // args.batch_size), 2 * 2 * args.workers)
        for _ in range(batches):
            next(it)
        return batches * args.batch_size * args.clip_len

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48, help="clips per cell (procedural videos)")
    parser.add_argument(
        "--real-clips", type=int, default=16, help="clips per cell (720p clips: slow to seek)"
    )
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--frame-size", type=int, default=64, help="output side; decoder scales to it")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 clips per cell: tests the script")
    args = parser.parse_args()
    if args.quick:
        args.clips = args.real_clips = 4
    torch.manual_seed(0)
    # One intra-op thread, as in training (recipes set train.num_threads: 1) and in data-loader
    # workers: on a busy machine more threads slow the per-clip transforms down.
    torch.set_num_threads(1)

    folder = build_procedural_videos(ProceduralVideoSpec())
    sets = {"procedural": sorted((folder / "videos" / "train").rglob("*.mp4"))}
    real = [REAL_CLIPS / "squirrel.mp4", REAL_CLIPS / "squirrel_no_audio.mp4"]
    if all(p.is_file() for p in real):
        sets["real 720p"] = real
    scanned = {name: scan_sources([(p, -1) for p in paths]) for name, paths in sets.items()}

    rows: dict[str, list[float]] = {}
    for name, sources in scanned.items():
        clips = args.clips if name == "procedural" else args.real_clips
        plan = clip_plan(sources, clips, args.clip_len, args.stride)
        size = decode_size(sources[0].height, sources[0].width, args.frame_size)
        measurements = {
            "bare decord, full size (default thr)": bare_decord(plan, 0),
            "bare decord, full size (1 thr)": bare_decord(plan, 1),
            "bare decord, scaled in decoder (1 thr)": bare_decord(plan, 1, size),
            "mmssl read_video, scaled (1 thr)": mmssl_read(plan, args.frame_size),
            "mmssl dataset item (+crop, normalise)": dataset_items(sources, args),
            "bare torchcodec, full size (1 thr)": bare_torchcodec(plan, 1),
            "bare torchcodec, scaled in decoder (1 thr)": bare_torchcodec(plan, 1, size),
            "mmssl read_video torchcodec, scaled (1 thr)": mmssl_read(plan, args.frame_size, "torchcodec"),
            "mmssl dataset item, torchcodec": dataset_items(sources, args, "torchcodec"),
            f"mmssl DataLoader ({args.workers} workers, batch {args.batch_size})": loader_items(
                sources, args
            ),
        }
        for row, fn in measurements.items():
            rows.setdefault(row, []).append(frames_per_s(fn, clips))

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(
        f"clips of {args.clip_len} frames at stride {args.stride}, {args.clips} / {args.real_clips} clips "
        f"per cell (procedural / real), output {args.frame_size} px, 1 torch thread, "
        f"{os.cpu_count()} CPUs{load}"
    )
    print("decoded frames/s (higher is better)")
    header = f"{'reader':<44}" + "".join(f"{name:>14}" for name in scanned)
    print(header)
    print("-" * len(header))
    for row, values in rows.items():
        print(f"{row:<44}" + "".join(f"{v:>14.0f}" for v in values))


if __name__ == "__main__":
    main()
