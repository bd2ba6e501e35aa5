"""Video evaluators: semi-supervised video object segmentation by label propagation (DAVIS protocol).

``label_propagation`` reads the bundle's
:class:`~mmssl.modalities.video.propagation_set.PropagationSet` (a DAVIS-layout root, the sequence names
and the resolution, put in ``extras`` by the video dataset builders; the ``root`` / ``sequences`` options
override it, e.g. to point at a real DAVIS copy), and for every sequence

1. loads the frames (optionally resized, ``frame_size``) and the ground-truth masks;
2. encodes every frame with the frozen encoder (its feature map, no projection head), L2-normalised;
3. propagates the first frame's mask (:func:`mmssl.modalities.video.propagation.propagate_labels`:
   first frame + ``n_context`` recent frames, top-``topk`` neighbours within ``radius`` cells,
   softmax at ``temperature``), upsamples bilinearly to the frame size and takes the argmax;
4. scores J and F per object on every frame but the first and the last
   (:mod:`mmssl.modalities.video.davis_metrics`).

It returns ``jf_mean``, ``j_mean``, ``f_mean``, ``j_recall``, ``f_recall`` over all objects of all
sequences. With ``raw_color`` (default) the same protocol also runs with *raw colour* as the
features (the average Lab colour of each cell, at the encoder's output stride) and adds
``jf_mean_raw_color``, ``j_mean_raw_color``, ``f_mean_raw_color``: the "no learning at all"
reference (it does not depend on the encoder, so the pipeline's random-init column repeats it).
With ``figures_dir`` it saves one PNG strip per sequence (ground truth over prediction on evenly
spaced frames) and ``propagation_scores.json`` (per-sequence, per-object J and F).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.errors import DataError
from mmssl.eval.context import EvalContext
from mmssl.eval.features import eval_mode
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.modalities.video.davis_metrics import (
    BOUND_TH,
    VOID_LABEL,
    SequenceScores,
    evaluate_sequence,
    summarize,
)
from mmssl.modalities.video.encoders import RawColorEncoder, frame_feature_map
from mmssl.modalities.video.io import (
    VideoSequence,
    davis_palette,
    list_davis_sequences,
    list_frames,
    load_davis_sequence,
)
from mmssl.modalities.video.propagation import (
    downsample_labels,
    labels_to_masks,
    labels_to_onehot,
    propagate_labels,
)
from mmssl.modalities.video.propagation_set import PropagationSet

log = logging.getLogger(__name__)


def normalize_frames(frames: Tensor) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, H, W]`` normalised with ImageNet mean/std."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_frames(encoder: nn.Module, frames: Tensor, device: torch.device, batch_size: int = 8) -> Tensor:
    """Frozen, L2-normalised feature maps ``[T, C, h, w]`` (float32, on ``device``) of normalised
    frames ``[T, 3, H, W]``, in batches; bf16 autocast on CUDA."""
    maps = []
    for i in range(0, frames.shape[0], batch_size):
        x = frames[i : i + batch_size].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            fmap = frame_feature_map(encoder, x)
        maps.append(F.normalize(fmap.float(), dim=1))
    return torch.cat(maps)


def frame_size_for(native: tuple[int, int], frame_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Evaluation size: None keeps ``native``; an int is the short side (aspect kept); (h, w) is exact."""
    if frame_size is None:
        return None
    if isinstance(frame_size, int):
        h, w = native
        scale = frame_size / min(h, w)
        return (max(1, round(h * scale)), max(1, round(w * scale)))
    size = tuple(int(s) for s in frame_size)
    if len(size) != 2:
        raise ValueError(f"frame_size must be an int (short side) or [height, width], got {frame_size}")
    return size  # type: ignore[return-value]


def load_sequence(
    root: str | Path,
    name: str,
    resolution: str,
    frame_size: int | Sequence[int] | None,
    max_frames: int | None,
) -> VideoSequence:
    """A DAVIS-layout sequence at the evaluation size (the native size is read from its first frame)."""
    size = None
    if frame_size is not None:
        files = list_frames(Path(root) / "JPEGImages" / resolution / name)
        if not files:
            raise DataError(f"no frames for sequence '{name}' under {root}")
        with Image.open(files[0]) as img:
            native = (img.height, img.width)
        size = frame_size_for(native, frame_size)
    seq = load_davis_sequence(root, name, resolution, max_frames=max_frames, size=size)
    if seq.masks is None:
        raise DataError(f"sequence '{name}' under {root} has no Annotations: label propagation needs masks")
    if bool((seq.masks[0] < 0).all()):
        raise DataError(f"sequence '{name}' under {root} has no mask for its first frame")
    return seq


def propagate_sequence(
    encoder: nn.Module,
    seq: VideoSequence,
    device: torch.device,
    *,
    n_context: int,
    topk: int,
    radius: float | None,
    temperature: float,
    batch_size: int = 8,
) -> Tensor:
    """Predicted label maps ``[T, H, W]`` (int64, CPU) for one sequence, from its first-frame mask."""
    frames = normalize_frames(seq.frames)
    feats = encode_frames(encoder, frames, device, batch_size)
    first = seq.masks[0].clone()
    first[first == VOID_LABEL] = 0
    num_objects = int(first.clamp(min=0).max())
    onehot = labels_to_onehot(first, num_objects + 1).to(device)
    first_labels = downsample_labels(onehot, tuple(feats.shape[-2:]))
    soft = propagate_labels(
        feats, first_labels, n_context=n_context, topk=topk, radius=radius, temperature=temperature
    )
    masks = labels_to_masks(soft, tuple(frames.shape[-2:])).cpu()
    masks[0] = first.clamp(min=0)  # the given frame is the ground truth itself
    return masks


def _overlay(frame: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    colour = palette[np.clip(mask, 0, 255)].astype(np.float32)
    out = frame.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return out.astype(np.uint8)


def save_strip(
    path: Path, seq: VideoSequence, pred: Tensor, num_frames: int = 6, max_height: int = 160
) -> Path:
    """PNG: ``num_frames`` evenly spaced frames; top row ground truth, bottom row prediction."""
    t = seq.frames.shape[0]
    idx = sorted(set(np.linspace(0, t - 1, min(num_frames, t)).round().astype(int).tolist()))
    palette = davis_palette()
    frames = seq.frames.numpy()
    gt = seq.masks.clamp(min=0).numpy()
    pr = pred.numpy()
    rows = [np.concatenate([_overlay(frames[i], m[i], palette) for i in idx], axis=1) for m in (gt, pr)]
    sep = np.full((2, rows[0].shape[1], 3), 255, dtype=np.uint8)
    image = Image.fromarray(np.concatenate([rows[0], sep, rows[1]], axis=0))
    h = frames.shape[1]
    if h > max_height:
        scale = max_height / h
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    elif 2 * h <= max_height:  # tiny frames (procedural 64 px): enlarge, keeping pixels sharp
        scale = max_height // h
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _sequence_names(found: PropagationSet | None, root: str, resolution: str, sequences: Any) -> list[str]:
    if isinstance(sequences, (list, tuple)):
        return [str(s) for s in sequences]
    names = found.sequences if found is not None and found.root == root else None
    names = list(names) if names else list_davis_sequences(root, resolution)
    if isinstance(sequences, int):
        names = names[: max(1, sequences)]
    return names


def _output_stride(encoder: nn.Module, device: torch.device) -> int:
    stride = getattr(encoder, "stride", None)
    if isinstance(stride, int) and stride > 0:
        return stride
    with torch.no_grad():
        fmap = frame_feature_map(encoder, torch.zeros(1, 3, 64, 64, device=device))
    return max(1, round(64 / fmap.shape[-1]))


def label_propagation(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    n_context: int = 20,
    topk: int = 10,
    radius: float | None = 12.0,
    temperature: float = 0.05,
    frame_size: int | list[int] | None = None,
    max_frames: int | None = None,
    sequences: int | list[str] | None = None,
    root: str | None = None,
    resolution: str | None = None,
    raw_color: bool = True,
    bound_th: float = BOUND_TH,
    batch_size: int = 8,
    strip_frames: int = 6,
) -> dict[str, float]:
    """DAVIS semi-supervised VOS by label propagation (Jabri et al. 2020) -> ``jf_mean``, ``j_mean``,
    ``f_mean``, ``j_recall``, ``f_recall`` (+ ``*_raw_color`` with ``raw_color``).

    ``n_context``: recent frames in the context besides the first (paper 20). ``topk``: neighbours
    (paper 10). ``radius``: spatial restriction on recent frames, in feature cells (paper 12; null
    disables). ``temperature``: softmax temperature on cosine affinities (paper 0.05).
    ``frame_size``: short side in pixels (aspect kept) or [h, w]; null = native (480p is slow on CPU).
    ``max_frames``: keep the first frames of each sequence. ``sequences``: how many of the listed
    sequences (int) or their names. ``root`` / ``resolution``: a DAVIS-layout root to use instead of
    the dataset's ``PropagationSet`` (e.g. a real DAVIS copy). ``raw_color``: also evaluate raw Lab
    colour cells. ``bound_th``: F's boundary tolerance (fraction of the diagonal). ``batch_size``:
    frames per encoder call. ``strip_frames``: frames per PNG strip. ``seed`` is unused (deterministic).
    """
    device, figures_dir = ctx.device, ctx.figures_dir
    device = torch.device(device)
    found = data.find_extra(PropagationSet)
    root = str(root) if root else (found.root if found is not None else None)
    if not root:
        raise DataError(
            f"label_propagation needs a DAVIS-layout root: dataset '{data.name or '?'}' gave no "
            "PropagationSet and no eval.label_propagation.root was set"
        )
    resolution = resolution or (found.resolution if found is not None else "480p")
    names = _sequence_names(found, root, resolution, sequences)
    if not names:
        raise DataError(f"no sequences to evaluate under {root}")
    figures = Path(figures_dir) if figures_dir is not None else None

    encoder.to(device)
    opts = dict(n_context=n_context, topk=topk, radius=radius, temperature=temperature, batch_size=batch_size)
    t0 = time.perf_counter()
    with eval_mode(encoder):  # also for the stride probe below, which may run a forward
        feature_sets: list[tuple[str, nn.Module]] = [("", encoder)]
        if raw_color:
            feature_sets.append(("_raw_color", RawColorEncoder(_output_stride(encoder, device)).to(device)))
        scores: dict[str, list[SequenceScores]] = {suffix: [] for suffix, _ in feature_sets}
        for name in names:
            seq = load_sequence(root, name, resolution, frame_size, max_frames)
            for suffix, enc in feature_sets:
                pred = propagate_sequence(enc, seq, device, **opts)
                s = evaluate_sequence(pred, seq.masks, name=name, bound_th=bound_th)
                scores[suffix].append(s)
                if figures is not None and suffix == "":
                    save_strip(figures / f"propagation_{name}.png", seq, pred, strip_frames)
    log.info("label propagation: %d sequences in %.1f s", len(names), time.perf_counter() - t0)

    results: dict[str, float] = {}
    for suffix, _ in feature_sets:
        summary = summarize(scores[suffix])
        keys = (
            ("jf_mean", "j_mean", "f_mean", "j_recall", "f_recall")
            if not suffix
            else ("jf_mean", "j_mean", "f_mean")
        )
        results.update({f"{k}{suffix}": summary[k] for k in keys})
    if figures is not None:
        per_seq = {
            suffix or "encoder": {
                s.name: {
                    "j": s.j.mean(dim=1).tolist(),
                    "f": s.f.mean(dim=1).tolist(),
                    "frames": len(s.frames),
                }
                for s in scores[suffix]
            }
            for suffix, _ in feature_sets
        }
        figures.mkdir(parents=True, exist_ok=True)
        (figures / "propagation_scores.json").write_text(json.dumps(per_seq, indent=2))
    return results


__all__ = [
    "encode_frames",
    "frame_size_for",
    "label_propagation",
    "load_sequence",
    "normalize_frames",
    "propagate_sequence",
    "save_strip",
]
