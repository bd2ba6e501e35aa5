"""Stopping cleanly when a scheduler asks: SIGTERM and SIGUSR1 (what SLURM, Kubernetes and cloud spot
instances send before killing a job) make the trainer write a checkpoint at the next step boundary and
stop with :class:`Preempted`; ``resume=auto`` then continues exactly.

The handler only records the signal; the loop acts on it between steps, never inside one. Under torchrun
every rank gets the signal, but not necessarily before the same step: the ranks agree with a MAX
all-reduce of the signal number (every step on CPU; every ``log_every`` steps on CUDA, where reading the
result is a host sync), so they all checkpoint the same step and leave together.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from mmssl.core import distributed as dist

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RuntimeError):
    """Training stopped on a scheduler's signal after writing a checkpoint; ``exit_code`` is 128 + the
    signal number (the shell's convention for a process ended by that signal)."""

    def __init__(self, signum: int, step: int, checkpoint: str | None) -> None:
        name = signal.Signals(signum).name
        kept = f"checkpoint written at step {step}: {checkpoint}" if checkpoint else "nothing saved"
        super().__init__(f"received {name}; {kept} (continue with resume=auto)")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum


class StopSignals:
    """Records the first of :data:`STOP_SIGNALS` received between :meth:`install` and :meth:`restore`."""

    def __init__(self) -> None:
        self.received = 0
        self._previous: dict[signal.Signals, object] = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum

    def install(self) -> None:
        """Install the handlers (from the main thread only: elsewhere Python cannot, and nothing is done)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous = {}

    def agreed(self, device: torch.device) -> int:
        """The signal any rank received (0: none); a collective when several processes train."""
        if not dist.is_distributed() or dist.get_world_size() < 2:
            return self.received
        flag = torch.tensor([self.received], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())
