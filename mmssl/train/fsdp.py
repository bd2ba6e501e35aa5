"""``train.strategy: fsdp``: FSDP2 sharding and sharded checkpoints, with PyTorch's own tools.

Sharding (:func:`shard_method`) is ``torch.distributed.fsdp.fully_shard`` applied to every *unit* and then
to the whole method, so that each unit's parameters are all-gathered just before it runs and freed after,
and every rank keeps ``1 / world_size`` of the parameters, gradients and optimizer state. Units are
declared, not guessed: the core transformer :class:`~mmssl.core.transformer.Block` (every ViT / MAE
encoder and decoder block of every modality), and the classes a Hugging Face model names in its
``_no_split_modules`` (e.g. ``BertLayer``: the ecosystem's own list of what must not be split).

Checkpoints (:func:`save_sharded` / :func:`load_sharded`) are ``torch.distributed.checkpoint`` (DCP)
folders: each rank writes its own shards of the model and optimizer state (``get_state_dict``), plus
``meta.pt`` (step, scheduler, RNG of every rank, data position, recipe) written by rank 0. A folder is
written under a temporary name and renamed when every rank has finished, so ``last_sharded/`` is always
complete; the previous one is removed only then. DCP folders load onto any number of ranks.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

from mmssl.core import distributed as dist
from mmssl.core.transformer import Block
from mmssl.safe_load import load_weights

SHARDED_NAME = "last_sharded"
META_NAME = "meta.pt"


@contextmanager
def _one_process_is_intended() -> Iterator[None]:
    """DCP warns on every single-process save or load; without torchrun that is what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def shard_units(method: nn.Module) -> list[nn.Module]:
    """The submodules sharded one by one (see the module docstring), outermost first."""
    hf_names = {name for m in method.modules() for name in getattr(m, "_no_split_modules", None) or ()}
    units = [m for m in method.modules() if isinstance(m, Block) or type(m).__name__ in hf_names]
    return [m for m in units if m is not method]


def shard_method(method: nn.Module) -> nn.Module:
    """``fully_shard`` every unit, then the method (in place; returns it)."""
    for unit in reversed(shard_units(method)):  # innermost first, as FSDP2 expects
        fully_shard(unit)
    fully_shard(method)
    return method


def set_gradient_sync(method: nn.Module, enabled: bool) -> None:
    """Whether the next backward reduce-scatters gradients (off on accumulation micro-steps, as no_sync)."""
    if isinstance(method, FSDPModule):
        method.set_requires_gradient_sync(enabled)


def full_state_dict(method: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model state on rank 0 (CPU tensors; empty on the other ranks), gathered from the shards."""
    return get_model_state_dict(method, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(
    folder: Path, method: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> Path:
    """Write ``folder/last_sharded`` (see the module docstring); every rank must call this."""
    final, tmp, old = folder / SHARDED_NAME, folder / f".{SHARDED_NAME}.tmp", folder / f".{SHARDED_NAME}.old"
    if dist.is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(method, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    with _one_process_is_intended():
        dcp.save(state, checkpoint_id=str(tmp), no_dist=not dist.is_distributed())
    if dist.is_main_process():
        torch.save(meta, tmp / META_NAME)
    dist.barrier()
    if dist.is_main_process():
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def _drop_options_the_checkpoint_lacks(optim_state: dict[str, Any], folder: Path) -> None:
    """Remove param-group options that the optimizer gained after ``folder`` was written (e.g. LARS ``clip``):
    DCP loads only keys the checkpoint has, and the optimizer's ``load_state_dict`` then gives them the
    value old states mean (its ``__setstate__`` defaults). ``params`` stays, so a checkpoint with other param
    groups still fails loudly in DCP."""
    stored = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    for index, group in enumerate(optim_state["param_groups"]):
        missing = [k for k in group if f"optimizer.param_groups.{index}.{k}" not in stored]
        for option in (k for k in missing if k != "params"):
            del group[option]


def load_sharded(
    folder: Path, method: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load a :func:`save_sharded` folder into ``method`` (sharded or not) and ``optimizer`` (None: the
    model only, e.g. to evaluate); returns its meta."""
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        raise ValueError(f"{folder} is not a complete sharded checkpoint (no {META_NAME})")
    if optimizer is None:
        state = {"model": get_model_state_dict(method)}
        with _one_process_is_intended():
            dcp.load(state, checkpoint_id=str(folder), no_dist=not dist.is_distributed())
        set_model_state_dict(method, state["model"])
        return load_weights(meta_path)
    model_state, optim_state = get_state_dict(method, optimizer)
    _drop_options_the_checkpoint_lacks(optim_state, folder)
    state = {"model": model_state, "optimizer": optim_state}
    with _one_process_is_intended():
        dcp.load(state, checkpoint_id=str(folder), no_dist=not dist.is_distributed())
    set_state_dict(method, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return load_weights(meta_path)
