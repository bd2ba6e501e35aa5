"""Moving a batch (tensors nested in dicts, lists and tuples) to a device: one function for the trainer,
the evaluators and any method that predicts on its own data."""

from __future__ import annotations

from typing import Any

import torch


def move_to(batch: Any, device: torch.device) -> Any:
    """Every tensor in a nested batch moved to ``device`` (asynchronously from pinned memory); other
    values are returned as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def to_channels_last(batch: Any) -> Any:
    """Every 4-D floating-point tensor of ``batch`` (dicts, lists and tuples walked) in NHWC memory
    format; the values and shapes are unchanged, only the strides."""
    if torch.is_tensor(batch):
        return (
            batch.contiguous(memory_format=torch.channels_last)
            if batch.dim() == 4 and batch.is_floating_point()
            else batch
        )
    if isinstance(batch, dict):
        return {k: to_channels_last(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_channels_last(v) for v in batch)
    return batch
