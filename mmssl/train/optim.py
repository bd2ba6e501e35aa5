"""Optimisers (SGD, LARS, AdamW) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.train.config import TrainConfig


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017), as used by SimCLR and BYOL.

    For every parameter tensor ``w`` with gradient ``g`` (weight decay ``wd`` folded in):

        g' = g + wd * w
        trust = eta * ||w|| / ||g'||       (1 when either norm is 0)
        v = momentum * v + trust * g'
        w = w - lr * v

    ``clip`` (LARC's clipping mode, as solo-learn's ``clip_lars_lr``) replaces ``trust`` by
    ``min(trust / lr, 1)``: the layer's step ``lr * trust`` becomes ``min(eta * ||w|| / ||g'||, lr)``, so
    ``eta`` is then the layer's own rate and ``lr`` (with its warm-up and decay) a cap on it. solo-learn's
    CIFAR-10 SimCLR and BYOL settings use it with ``eta = 0.02``; SimCLR's reference uses
    ``eta = 0.001`` without clipping (the defaults).

    Groups with ``lars_adapt=False`` (biases and normalisation parameters, following the SimCLR
    reference) get neither weight decay nor the trust ratio: plain momentum SGD.

    Like torch's fused optimizers, a step reads ``self.found_inf`` when it is set (a 0-d device tensor,
    non-zero: change nothing), so the trainer can skip a non-finite step without a host sync
    (:mod:`mmssl.train.nonfinite`).
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
        clip: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            nesterov=nesterov,
            clip=clip,
            lars_adapt=True,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # optimizer states saved before ``clip`` existed load as unclipped
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("clip", False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Set by the non-finite guard on CUDA, as for torch's fused optimizers (GradScaler's mechanism): a
        # 0-d tensor, non-zero when the step must change nothing. Read on the device, never on the host.
        found_inf = getattr(self, "found_inf", None)
        keep = None if found_inf is None else found_inf == 0
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params, keep)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor], keep: Tensor | None) -> None:
        """One group's update with multi-tensor (``torch._foreach_*``) kernels for the element-wise work and
        the norms, instead of ~10 launches per parameter tensor, which on a GPU could make a ResNet-18 step
        host-bound. Scaling each tensor by its own trust ratio (and, with ``found_inf``, zeroing gradients)
        is still one kernel per tensor."""
        grads = [p.grad for p in params]
        if keep is not None:  # a skipped step's gradients may be inf/NaN: zero them (a multiply would not)
            grads = [torch.where(keep, g, 0.0) for g in grads]
        # Zeros, not a copy of the first gradient: the first update ``0 * momentum + g'`` is the same, and
        # a skipped first step leaves no state behind but zeros.
        buffers = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buffers.append(state["momentum_buffer"])
        if group["lars_adapt"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])  # g' = g + wd * w
            w_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            rate = group["eta"] * w_norm / g_norm
            if group["clip"]:  # at lr 0 the cap binds: rate / 0 = inf, clamped to 1
                rate = torch.clamp(rate / group["lr"], max=1.0)
            trust = torch.where((w_norm > 0) & (g_norm > 0), rate, 1.0)
            if keep is not None:  # and no weight decay either
                trust = torch.where(keep, trust, 0.0)
            torch._foreach_mul_(grads, trust.unbind(0))
        momentum, lr = group["momentum"], group["lr"]
        # v = momentum * v + trust * g' (a skipped step: factor 1, gradient 0: v unchanged)
        torch._foreach_mul_(buffers, momentum if keep is None else torch.where(keep, momentum, 1.0))
        torch._foreach_add_(buffers, grads)
        update = torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers
        if keep is not None:  # a skipped step moves nothing; a kept one rounds as without found_inf
            update = torch._foreach_mul(update, keep.to(update[0].dtype))
        torch._foreach_add_(params, update, alpha=-lr)  # w = w - lr * v


def _is_bias_or_norm(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias")


def parameter_groups(model: nn.Module, weight_decay: float, exclude_bias_and_norm: bool) -> list[dict]:
    """Split trainable parameters into decayed weights and (optionally) undecayed biases/norms."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if exclude_bias_and_norm and _is_bias_or_norm(name, param) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_adapt": False})
    return groups


def effective_lr(cfg: TrainConfig, world_size: int = 1) -> float:
    """The peak learning rate: ``lr``, or ``lr * global_batch / 256`` under linear scaling."""
    if cfg.lr_scaling == "linear":
        return cfg.lr * cfg.batch_size * cfg.accumulate * world_size / 256
    return cfg.lr


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, world_size: int = 1, fused: bool = False
) -> torch.optim.Optimizer:
    """The recipe's optimizer over :func:`parameter_groups`. ``fused`` (SGD and AdamW; CUDA): one kernel
    per step, and a step skipped on the device when ``optimizer.found_inf`` is set
    (:mod:`mmssl.train.nonfinite`)."""
    lr = effective_lr(cfg, world_size)
    extra = {"fused": True} if fused else {}
    groups = parameter_groups(model, cfg.weight_decay, cfg.exclude_bias_and_norm)
    if cfg.optimizer == "sgd":
        for g in groups:
            g.pop("lars_adapt", None)
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **extra)
    if cfg.optimizer == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            eta=cfg.lars_eta,
            nesterov=cfg.nesterov,
            clip=cfg.lars_clip,
        )
    if cfg.optimizer == "adamw":
        for g in groups:
            g.pop("lars_adapt", None)
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), **extra)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'")


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine decay to ``min_ratio``.

    cosine: f(t) = min + (1 - min) * (1 + cos(pi * t)) / 2, t = (step - warmup) / (total - warmup)
    (Loshchilov & Hutter, SGDR, without restarts).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        return lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
