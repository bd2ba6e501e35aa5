"""Slowly moving copies of the model and stores of past features.

* :func:`cosine_momentum` and :class:`EMATeacher`: BYOL's target network (Grill et al. 2020, Sec. 3.1),
  ``xi <- tau xi + (1 - tau) theta`` with ``tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2``;
  MoCo's key encoder is the same with a constant tau (m = 0.999).
* :class:`MomentumQueue`: MoCo's FIFO dictionary of keys (He et al. 2020, Sec. 3.2).
* :class:`MemoryBank`: Wu et al. (2018) non-parametric instance discrimination: one stored feature per
  training sample, updated with a proximal (momentum) step ``v <- m v + (1 - m) f``, renormalised.

The stores are registered buffers, so they follow ``.to(device)`` and live in checkpoints.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.distributed import gather_no_grad, unwrap_model


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """BYOL's EMA coefficient at ``step`` of ``total_steps``: ``base`` at 0, rising to ``final`` at K.

    ``tau = final - (final - base) * (cos(pi k / K) + 1) / 2``; with final = 1 this is BYOL's
    ``1 - (1 - base)(cos(pi k / K) + 1) / 2``. The step is clamped to [0, K].
    """
    if total_steps <= 0:
        return final
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMATeacher(nn.Module):
    """A frozen deep copy of a module, moved towards the student by exponential moving average.

    Parameters follow ``t <- m t + (1 - m) s``; buffers (e.g. BN running statistics) are copied from
    the student. Calling the teacher runs the copy without building a graph.
    """

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(unwrap_model(student))
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """One EMA step with coefficient ``momentum`` (1 keeps the teacher, 0 copies the student)."""
        student = unwrap_model(student)
        t_params = dict(self.module.named_parameters())
        s_params = dict(student.named_parameters())
        if t_params.keys() != s_params.keys():
            raise ValueError("student and teacher have different parameters")
        for name, t in t_params.items():
            # lerp: t + (1 - m)(s - t) = m t + (1 - m) s
            t.lerp_(s_params[name].detach().to(t.dtype), 1.0 - momentum)
        t_buffers = dict(self.module.named_buffers())
        for name, s in student.named_buffers():
            t_buffers[name].copy_(s)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)


class MomentumQueue(nn.Module):
    """Ring buffer of the ``size`` most recent L2-normalised keys [size, dim] (MoCo's dictionary).

    Starts filled with random unit vectors, as in MoCo. ``enqueue`` first gathers the keys of all
    processes, so every process holds the same queue.
    """

    queue: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Replace the oldest entries by ``keys`` [B, dim] (gathered from all processes, normalised).

        Writes wrap around the end of the buffer, so the batch need not divide the queue size; when
        more keys than ``size`` arrive, only the newest ``size`` are kept.
        """
        keys = F.normalize(gather_no_grad(keys).to(self.queue.dtype), dim=1)
        if keys.shape[0] > self.size:
            keys = keys[-self.size :]
        n = keys.shape[0]
        idx = (int(self.ptr) + torch.arange(n, device=self.queue.device)) % self.size
        self.queue[idx] = keys
        self.ptr.fill_((int(self.ptr) + n) % self.size)

    @property
    def negatives(self) -> Tensor:
        """The stored keys [size, dim], as a copy: enqueuing later must not alter a loss's saved inputs."""
        return self.queue.clone()


class MemoryBank(nn.Module):
    """One L2-normalised feature per training sample (Wu et al. 2018), initialised at random.

    ``update`` applies ``v_i <- normalise(m v_i + (1 - m) f_i)`` after gathering indices and features
    from all processes; ``sample_negatives`` draws stored features uniformly (with replacement).
    """

    features: Tensor

    def __init__(self, num_samples: int, dim: int, momentum: float = 0.5) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("features", F.normalize(torch.randn(num_samples, dim), dim=1))

    @property
    def num_samples(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def update(self, indices: Tensor, features: Tensor) -> None:
        """Move the stored features of ``indices`` [B] towards ``features`` [B, dim] (normalised first).

        A sample index repeated in the gathered batch gets one of its updates (which one is unspecified).
        """
        indices = gather_no_grad(indices).to(self.features.device).long()
        feats = F.normalize(gather_no_grad(features).to(self.features.dtype), dim=1)
        mixed = self.momentum * self.features[indices] + (1.0 - self.momentum) * feats
        self.features[indices] = F.normalize(mixed, dim=1)

    def get(self, indices: Tensor) -> Tensor:
        """Stored features of ``indices`` (a copy)."""
        return self.features[indices.to(self.features.device).long()]

    def sample_negatives(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` stored features [k, dim] drawn uniformly at random (a copy)."""
        device = generator.device if generator is not None else self.features.device
        idx = torch.randint(self.num_samples, (k,), generator=generator, device=device)
        return self.features[idx.to(self.features.device)]
