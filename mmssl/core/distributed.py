"""Process-group helpers: the only place in mmssl that talks to ``torch.distributed`` directly.

Everything here degrades to a no-op (or the identity) in a plain single process, so the same training
code runs under ``torchrun`` and without it.

The one subtle piece is :func:`gather_with_grad`. ``torch.distributed.all_gather`` returns tensors that
are cut off from autograd, so a contrastive loss that uses other processes' embeddings as negatives
would silently drop the gradient flowing *to those embeddings*. Each process computes a loss
``L_r`` that depends on every process's embeddings ``z_s``; the gradient the optimiser needs for
``z_r`` is ``sum_s dL_s/dz_r``. The backward of :class:`_GatherWithGrad` therefore all-reduces
(sums) the incoming gradient and returns this rank's slice. Combined with DDP's averaging of
parameter gradients, this reproduces exactly the gradient of the loss averaged over processes,
i.e. the single-process gradient on the whole global batch.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0; use it to guard logging, checkpoint writes and figures."""
    return get_rank() == 0


def _launched_by_torchrun() -> bool:
    return all(v in os.environ for v in _ENV_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(backend: str | None = None) -> torch.device:
    """Join the process group described by torchrun's environment and return this process's device.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (``MASTER_ADDR``/``MASTER_PORT`` are read by
    ``init_method="env://"``). The backend defaults to ``nccl`` when CUDA is available and ``gloo``
    otherwise. Without those variables (or with ``WORLD_SIZE=1``) nothing is initialised and the
    single-process device is returned (``cuda`` when available, else ``cpu``). Workers that torchrun
    restarted (``--max-restarts``) on one node use keys of their own (:func:`_store_of_this_attempt`).
    """
    cuda = torch.cuda.is_available()
    if not _launched_by_torchrun():
        return torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")

    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        # Bind the device before creating the group so NCCL picks the right GPU.
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not is_distributed():
        # A worker that aborts in native code (SIGABRT, SIGSEGV) leaves torchrun's report with only the
        # signal number; with faulthandler it also prints every thread's Python stack to stderr, which says
        # where it happened (mid-step, in a collective, or at interpreter shutdown).
        if not faulthandler.is_enabled():
            faulthandler.enable(all_threads=True)
        backend = backend or ("nccl" if cuda else "gloo")
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        store = _store_of_this_attempt()
        if store is None:
            dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
        else:
            dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
        # Whatever way this process ends (``mmssl train``, which has no explicit end of the group, an
        # exception, the preemption exit), the group is destroyed while the interpreter is whole: see
        # cleanup_distributed. atexit runs before interpreter finalisation; a second call is a no-op.
        atexit.register(cleanup_distributed)
    return device


def _store_of_this_attempt() -> dist.Store | None:
    """After an elastic restart by a single torchrun agent, the agent's store seen under a prefix of its own.

    By default (``TORCHELASTIC_USE_AGENT_STORE=True``: the static rendezvous always, the c10d one unless the
    launcher sets ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``) the workers build their process group on the
    agent's TCPStore (``torch/distributed/rendezvous.py``, ``_create_c10d_store``), and the agent keeps that
    store across restarts (``StaticTCPRendezvous`` caches ``self._store``; ``DynamicRendezvousHandler``
    creates ``_shared_tcp_store_server`` only for the first round). So the restarted workers find the dead
    workers' gloo addresses (``default_pg/0//cpu//0/<rank>``) already there and may connect to them: a
    "Connection refused" in ``connectFullMesh``, or both ranks waiting for the other to connect, for ever.
    Without the prefix, restarts of 2 processes failed 5 times in 10 with the c10d rendezvous, 8 in 10 with
    the static one. torchrun numbers the attempts per agent (``TORCHELASTIC_RESTART_COUNT``), which the
    agents of several nodes need not agree on (pytorch/pytorch#135712), so the prefix is only used with one
    agent; several nodes need ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (a new store per rendezvous round) and
    are warned without it.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if os.environ.get("GROUP_WORLD_SIZE", "1") != "1":
        if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and os.environ["RANK"] == "0":
            warnings.warn(
                "an elastic restart of several torchrun nodes sharing the rendezvous store can reuse the "
                "previous attempt's addresses (pytorch/pytorch#135712): launch every node with "
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 and --rdzv-backend c10d",
                stacklevel=3,
            )
        return None
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if attempt == 0:
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=dist.default_pg_timeout,
    )
    return dist.PrefixStore(f"mmssl_attempt{attempt}", store)


def cleanup_distributed() -> None:
    """Destroy the process group if one exists (safe to call in a single process, and more than once).

    Why it matters: a gloo group still alive when the interpreter is finalised can abort the process
    ("terminate called without an active exception", SIGABRT): its C++ worker threads may still hold work
    objects whose tensors point into Python, and freeing them then needs a GIL that is being torn down
    (the mechanism described in pytorch/pytorch#179291). Seen as a rank of a finished run aborting at exit
    (1 pass in 18 of the distributed tests, then 1 in 30 in the relaunched ``mmssl train`` of
    tests/test_multinode.py, which ended without destroying its group). So :func:`init_distributed`
    registers this function with ``atexit``; ``mmssl run`` also calls it as soon as a rank is done.
    Unreachable objects that may still hold the group (e.g. a DDP module in a reference cycle) are collected
    first, so that the threads they own are joined here."""
    if is_distributed():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    """Synchronise all processes; no-op in a single process."""
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (in place); no-op in a single
    process. After DDP training the ranks' BatchNorm running statistics differ (each rank's last forward
    updated its own): ranks that evaluate together must first hold the module rank 0 saves."""
    if not is_distributed():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src)


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over processes, as a new tensor (no gradient); ``t`` itself is left unchanged."""
    out = t.detach().clone()
    if get_world_size() == 1:
        return out
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradient over processes and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.batch = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        # Every process's loss may depend on our rows: their gradient is the sum over processes.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` [B, ...] from all processes along dim 0, keeping exact gradients.

    The result is [world_size * B, ...] with rank ``r``'s rows at ``r*B : (r+1)*B``. All processes
    must pass the same shape. Identity when not distributed.
    """
    if get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` [B, ...] from all processes along dim 0, detached (for queues and banks)."""
    x = x.detach()
    if get_world_size() == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace BatchNorm layers by SyncBatchNorm so batch statistics span all processes.

    Only done when several processes run on CUDA: PyTorch's SyncBatchNorm has no CPU kernel, so on
    CPU (gloo) the module is returned unchanged and each process normalises with its own batch.
    """
    if get_world_size() > 1 and torch.cuda.is_available():
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def unwrap_model(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or ``module`` itself)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return module.module if isinstance(module, wrappers) else module
