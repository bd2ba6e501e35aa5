"""Skipping optimizer steps whose loss or gradients are not finite (``train.max_nonfinite_steps``).

One bad batch (an overflow, a corrupt sample) should cost one step, not the run. Before each step's
forward the guard copies the method's buffers (BatchNorm statistics, MoCo queues: a non-finite forward
writes into them); after the backward it reduces the loss and every gradient to one flag, ``ok``. A bad
step then changes nothing: no parameter update, no optimizer state change, the buffers put back, and it
is counted (``skipped_steps`` in the logs). ``max_nonfinite_steps`` bad steps in a row stop the run with
:class:`~mmssl.train.trainer.NonFiniteLossError`, keeping the last checkpoint (every checkpointed state
is finite, since bad steps never change it).

Without a host sync on CUDA (``on_device``): ``ok`` stays on the device; the optimizer skips its own
update when ``optimizer.found_inf`` is set (the mechanism ``GradScaler`` uses: SGD and AdamW are built
fused there, :class:`~mmssl.train.optim.LARS` reads it in its kernels); buffers are restored with
``torch.where``; the counters are read at log steps only. Until one optimizer step has been taken, the
decision is made on the host: fused SGD allocates its momentum buffers with ``empty_like`` before its
kernel sees ``found_inf``, so a first step skipped on the device would leave uninitialised memory as
momentum. The CPU and FSDP (whose sharded parameters the fused kernels do not take) read the flag every
step, which costs nothing on the CPU. Several processes agree on ``ok`` with a MIN all-reduce
(device-side), so they never diverge.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmssl.core import distributed as dist


def _local(t: Tensor) -> Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # FSDP2 shards are DTensors


class NonFiniteGuard:
    """See the module docstring. ``max_consecutive`` 0 disables it (the first non-finite loss stops the
    run, as before). ``on_device``: ``optimizer.step`` honours ``found_inf`` (the caller built it so)."""

    def __init__(
        self,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        max_consecutive: int,
        device: torch.device,
        on_device: bool = False,
    ) -> None:
        self.enabled = max_consecutive > 0
        self.max_consecutive = max_consecutive
        self.method, self.optimizer = method, optimizer
        self.on_device = on_device
        self._stepped = False  # an optimizer step was taken in this process (its state exists)
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.consecutive = torch.zeros((), dtype=torch.int64, device=device)
        self._saved: list[Tensor] = []

    def before_forward(self) -> None:
        if self.enabled:
            self._saved = [b.detach().clone() for b in self.method.buffers()]

    def check(self, loss: Tensor) -> Tensor:
        """``ok``: the summed loss of the step and every gradient are finite (agreed by all ranks)."""
        grads = [_local(p.grad) for p in self.method.parameters() if p.grad is not None]
        total = loss.detach().float().reshape(())
        if grads:
            total = total + torch.stack(torch._foreach_norm(grads)).float().sum()
        ok = torch.isfinite(total).to(torch.int32)
        if dist.is_distributed() and dist.get_world_size() > 1:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return ok.bool()

    def step(self, ok: Tensor) -> None:
        """The optimizer step when ``ok``; otherwise nothing changes but the counters."""
        if self.on_device and self._stepped:
            self.optimizer.found_inf = (~ok).float()  # type: ignore[attr-defined]
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf  # type: ignore[attr-defined]
            with torch.no_grad():
                for buffer, saved in zip(self.method.buffers(), self._saved):
                    buffer.copy_(torch.where(ok, buffer, saved))
        elif bool(ok):
            self.optimizer.step()
            self._stepped = True
        else:
            with torch.no_grad():
                for buffer, saved in zip(self.method.buffers(), self._saved):
                    buffer.copy_(saved)
        bad = (~ok).to(torch.int64)
        self.skipped += bad
        self.consecutive = (self.consecutive + 1) * bad

    def too_many(self) -> bool:
        """Whether the last ``max_consecutive`` steps were all skipped (a host read: call at log steps on
        CUDA, every step on the CPU)."""
        return int(self.consecutive) >= self.max_consecutive
