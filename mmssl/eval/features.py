"""Frozen-feature extraction shared by every evaluator, plus a small cache of extracted features.

An encoder follows the toolkit contract ``forward(x) -> {"global": [B, D], ...}``; a labelled dataset
yields ``{"input": tensor, "label": int}``. Nothing here knows the modality.

Cache design
------------
kNN, linear probe and few-shot all need the same frozen features of ``eval_train`` / ``eval_test``.
:func:`cached_features` memoises :func:`extract_features` under the key
``(id(encoder), id(dataset), device, channels_last, parameter-version stamp)``. The stamp lists, for
every parameter and buffer, its storage pointer and autograd version counter; optimiser steps,
``load_state_dict``, ``p.data = ...`` and a memory-format conversion all change it, so features of an
updated encoder are never served stale. Weak references guard against ``id`` reuse: an entry dies with
its encoder or dataset. The cache keeps at most :data:`CACHE_SIZE` entries (train + test for the trained
and for a random-init encoder); call :func:`clear_feature_cache` to free it. A dataset mutated in place
(e.g. a new transform) is not detected: pass ``cache=False`` to the evaluators in that case.
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from mmssl.core import distributed as dist
from mmssl.data.device import move_to, to_channels_last

CACHE_SIZE = 4

# key -> (weakref to encoder, weakref to dataset, (features, labels))
_cache: OrderedDict[tuple, tuple[weakref.ref, weakref.ref, tuple[Tensor, Tensor]]] = OrderedDict()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, then give every submodule back its own previous mode.

    Restoring one flag with ``model.train(was_training)`` is not the same: a container built on the fly
    (e.g. ``nn.ModuleDict({"encoder": ..., "head": ...})``) reports ``training=True`` whatever its
    children's modes are, and ``train(True)`` would switch a frozen BatchNorm back to training mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def global_features(output: Any) -> Tensor:
    """The ``"global"`` [B, D] entry of an encoder output (a bare tensor is accepted as is)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict) and "global" in output:
        return output["global"]
    keys = list(output) if isinstance(output, dict) else type(output).__name__
    raise TypeError(f"encoder output must be a dict with a 'global' [B, D] tensor, got {keys}")


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (no loss scaling needed); a disabled context elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    split_over_ranks: bool = False,
    channels_last: bool = False,
) -> tuple[Tensor, Tensor]:
    """Encode a labelled dataset with a frozen encoder.

    Runs in eval mode under ``no_grad`` (bf16 autocast on CUDA) and returns float32 CPU tensors
    ``features [N, D]`` and ``labels [N]`` (int64) in dataset order. The encoder is moved to ``device``
    (and stays there, like ``encoder.to(device)``); its previous training mode is restored.

    ``split_over_ranks`` (every process of a torchrun launch calls this together): rank ``r`` of ``R``
    encodes samples ``r, r + R, ...`` and the parts are all-gathered, so every rank returns the whole,
    in dataset order, after ``1 / R`` of the work.

    ``channels_last``: 4-D inputs are given to the encoder in NHWC memory format (the values are the
    same), as the trainer gives them with ``train.channels_last``; convolutions run faster that way on
    GPUs and on CPUs alike (oneDNN), most of all when the encoder's weights are NHWC too.
    """
    device = torch.device(device)
    world = dist.get_world_size()
    if split_over_ranks and world > 1 and len(dataset) >= world:  # type: ignore[arg-type]
        part = Subset(dataset, range(dist.get_rank(), len(dataset), world))  # type: ignore[arg-type]
        feats, labels = extract_features(
            encoder,
            part,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            collate_fn=collate_fn,
            channels_last=channels_last,
        )
        return _gather_strided(feats, labels, len(dataset), device)  # type: ignore[arg-type]
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda",
    )
    encoder.to(device)
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    with eval_mode(encoder):
        for batch in loader:
            if not isinstance(batch, dict) or "input" not in batch or "label" not in batch:
                raise TypeError("a labelled dataset must yield dicts {'input': tensor, 'label': int}")
            inputs = move_to(batch["input"], device)
            if channels_last:
                inputs = to_channels_last(inputs)
            with autocast_for(device):
                out = global_features(encoder(inputs))
            feats.append(out.float().cpu())
            labels.append(torch.as_tensor(batch["label"]).long().cpu())
    if not feats:
        raise ValueError("cannot extract features from an empty dataset")
    return torch.cat(feats), torch.cat(labels)


def _gather_strided(feats: Tensor, labels: Tensor, total: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Every rank's ``r::R`` part (padded to one length for ``all_gather``) put back in dataset order."""
    world = dist.get_world_size()
    rows = -(-total // world)
    packed = torch.zeros(rows, feats.shape[1] + 1, device=device)  # labels ride in the last column
    packed[: len(feats), :-1] = feats.to(device)
    packed[: len(feats), -1] = labels.to(device).float()
    parts = [torch.empty_like(packed) for _ in range(world)]
    torch.distributed.all_gather(parts, packed)
    full = torch.empty(total, packed.shape[1])
    for rank, part in enumerate(parts):
        count = len(range(rank, total, world))
        full[rank::world] = part[:count].cpu()
    return full[:, :-1].contiguous(), full[:, -1].round().long()


def parameter_stamp(module: nn.Module) -> tuple | None:
    """(storage pointer, version counter, shape) of every parameter and buffer; None if unavailable.

    The version counter is bumped by every in-place update (optimiser steps, ``copy_`` in
    ``load_state_dict``); re-assigning ``.data`` or moving devices changes the pointer.
    """
    try:
        tensors = list(module.parameters()) + list(module.buffers())
        return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)
    except (RuntimeError, AttributeError):  # e.g. inference-mode tensors have no version counter
        return None


def _drop_entries(slot: int, ident: int, _dead_ref: weakref.ref | None = None) -> None:
    """Weak-reference callback: forget entries whose encoder (slot 0) or dataset (slot 1) died."""
    for key in [k for k in _cache if k[slot] == ident]:
        del _cache[key]


def cached_features(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    cache: bool = True,
    split_over_ranks: bool = False,
    channels_last: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`extract_features`, memoised as described in the module docstring.

    The stamp is taken after the encoder has been moved to ``device`` so that moving it is not
    mistaken for a parameter change on the next call. Callers must not modify the returned tensors
    in place (they are shared between calls).
    """
    device = torch.device(device)

    def extract() -> tuple[Tensor, Tensor]:
        return extract_features(
            encoder,
            dataset,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            split_over_ranks=split_over_ranks,
            channels_last=channels_last,
        )

    if not cache:
        return extract()
    encoder.to(device)
    stamp = parameter_stamp(encoder)
    if stamp is None:
        return extract()
    key = (id(encoder), id(dataset), str(device), channels_last, stamp)
    entry = _cache.get(key)
    if entry is not None and entry[0]() is encoder and entry[1]() is dataset:
        _cache.move_to_end(key)
        return entry[2]
    try:  # the weak references die with their entry; their callbacks clean up after dead objects
        refs = (
            weakref.ref(encoder, functools.partial(_drop_entries, 0, id(encoder))),
            weakref.ref(dataset, functools.partial(_drop_entries, 1, id(dataset))),
        )
    except TypeError:  # not weak-referenceable: identity cannot be checked safely, do not cache
        return extract()
    result = extract()
    _cache[key] = (*refs, result)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def clear_feature_cache() -> None:
    """Forget every cached feature tensor."""
    _cache.clear()
