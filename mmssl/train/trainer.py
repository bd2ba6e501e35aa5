"""The one trainer: every method, every modality.

The loop is deliberately plain (torchvision references / nanoGPT style)::

    for step in range(start, steps):
        for micro in range(accumulate):
            out = model(next(batches)); check loss is finite; (out["loss"] / accumulate).backward()
        clip; optimizer.step(); scheduler.step(); method.on_train_step_end(step + 1, steps)
        log every log_every; checkpoint every ckpt_every (atomic)

Device: CUDA with bf16 autocast when present, else CPU fp32. Distributed: launched by ``torchrun``
(DDP, gloo on CPU / NCCL on GPU); the same call works as one process. Only rank 0 logs and writes.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from mmssl.core import distributed as dist
from mmssl.core.method import Method
from mmssl.data.device import move_to, to_channels_last
from mmssl.data.seeded import SeededDataset
from mmssl.data.shards import ShardStream
from mmssl.train.checkpoint import (
    FORMAT,
    PREVIOUS_NAME,
    load_checkpoint,
    rng_state,
    save_keeping_previous,
    set_rng_state,
)
from mmssl.train.config import TrainConfig
from mmssl.train.data import ResumableSampler
from mmssl.train.fsdp import (
    SHARDED_NAME,
    full_state_dict,
    load_sharded,
    save_sharded,
    set_gradient_sync,
    shard_method,
)
from mmssl.train.nonfinite import NonFiniteGuard
from mmssl.train.optim import build_optimizer, build_scheduler
from mmssl.train.preemption import Preempted, StopSignals
from mmssl.train.run_logger import LogOptions, RunLogger


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but CUDA is not available")
    return torch.device(choice)


def pretraining_loader(
    dataset: Dataset,
    cfg: TrainConfig,
    sampler: ResumableSampler | None,
    collate_fn: Callable | None,
    device: torch.device,
) -> DataLoader:
    """The trainer's DataLoader over ``dataset`` (per-sample seeded, resumable order): also what a benchmark
    times when it measures the data pipeline alone. A :class:`~mmssl.data.shards.ShardStream` (configured
    with :meth:`~mmssl.data.shards.ShardStream.configure`) orders itself and takes no sampler."""
    common = dict(
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
        collate_fn=collate_fn,
        # Its own generator, so creating the iterator does not draw from the global RNG
        # (a resumed run must see the same global RNG stream as an uninterrupted one).
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    if isinstance(dataset, ShardStream):
        return DataLoader(dataset, **common)
    if sampler is None:
        raise ValueError("a map-style pretraining dataset needs a ResumableSampler")
    return DataLoader(SeededDataset(dataset, cfg.seed), sampler=sampler, drop_last=True, **common)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA (``auto`` or ``bf16``); plain fp32 elsewhere."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StepMonitor(Protocol):
    """Measures the method every ``every`` optimiser steps while it trains (e.g. an online kNN accuracy);
    the values are logged with the step's losses. It must not change the training state."""

    every: int

    def __call__(self, method: nn.Module) -> dict[str, float]: ...


@dataclass
class TrainResult:
    steps: int
    final_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    checkpoint: Path | None = None
    # The run's logger, still open, when the trainer was asked to keep it (keep_logger_open): the caller
    # hands it the run's figures, then closes it (mmssl.figures.hand_new_figures_to).
    logger: RunLogger | None = field(default=None, repr=False, compare=False)


class Trainer:
    """Trains a method (``forward(batch) -> {"loss": ...}``) on a dataset.

    Args:
        cfg: the recipe's ``train`` section.
        method: the :class:`~mmssl.core.method.Method`; ``on_train_step_end`` runs after each step.
        dataset: the pretraining dataset (items are whatever ``method.forward`` expects).
        run_dir: where checkpoints and logs go (``None``: nothing is written).
        resume: ``None``, ``"auto"`` (continue from ``run_dir/checkpoints/last.pt`` when present)
            or a checkpoint path.
        extra_state: plain data stored in every checkpoint (resolved config, encoder spec).
        collate_fn: optional collate for the DataLoader.
        batch_transform: optional callable applied (without gradients) to each batch once it is on
            the training device, e.g. batched GPU augmentation.
        monitors: measured every ``monitor.every`` steps on the main process and logged (metrics.jsonl,
            TensorBoard), e.g. :class:`mmssl.eval.monitor.KNNMonitor`.
        log_options: the recipe's ``log`` section (optional loggers such as W&B,
            :mod:`mmssl.train.run_logger`).
        keep_logger_open: after a fit that ends normally, leave the run logger open as
            ``TrainResult.logger`` (the caller closes it), so that the figures written after training go to
            the same TensorBoard writer and W&B run as the losses.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        method: Method,
        dataset: Dataset,
        run_dir: str | Path | None = None,
        resume: str | None = None,
        extra_state: dict[str, Any] | None = None,
        collate_fn: Callable | None = None,
        batch_transform: Callable | None = None,
        monitors: list[StepMonitor] | None = None,
        log_options: LogOptions | None = None,
        keep_logger_open: bool = False,
    ) -> None:
        self.cfg = cfg
        self.method = method
        self.dataset = dataset
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume = resume
        self.extra_state = extra_state or {}
        self.collate_fn = collate_fn
        self.batch_transform = batch_transform
        self.monitors = [m for m in monitors or [] if m.every > 0]
        self.log_options = log_options
        self.keep_logger_open = keep_logger_open
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun
        self.device = dist.init_distributed() if launched else pick_device(cfg.device)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_dir(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir is not None else None

    def _resume_path(self) -> Path | None:
        if self.resume in (None, "", "none", "never"):
            return None
        if self.resume == "auto":
            if self.ckpt_dir is None:
                return None
            last = self.ckpt_dir / (SHARDED_NAME if self.cfg.strategy == "fsdp" else "last.pt")
            previous = self.ckpt_dir / PREVIOUS_NAME  # a run stopped between the two renames of a save
            if not last.exists() and self.cfg.strategy != "fsdp" and previous.is_file():
                return previous
            return last if last.exists() else None
        return Path(self.resume)

    def save_checkpoint(self, step: int, data_position: dict[str, int]) -> Path | None:
        """Rank 0 writes ``last.pt``; every rank must call this (each rank's RNG state is gathered into it,
        so that a resumed rank continues its own random stream, not rank 0's)."""
        if self.ckpt_dir is None:
            return None
        rngs = dist.all_gather_object(rng_state())
        meta = {
            "format": FORMAT,
            "step": step,
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs[0],
            "rng_per_rank": rngs,
            "data_position": data_position,
            **self.extra_state,
        }
        if self.cfg.strategy == "fsdp":  # every rank writes its shards (torch.distributed.checkpoint)
            return save_sharded(self.ckpt_dir, self.method, self.optimizer, meta)
        if not self.is_main:
            return None
        state = {**meta, "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict()}
        path = self.ckpt_dir / "last.pt"
        save_keeping_previous(state, path)
        return path

    def _load_or_previous(self, path: Path) -> dict[str, Any]:
        """The checkpoint at ``path``; with ``resume=auto``, ``previous.pt`` when ``path`` is unreadable
        (named in a warning), so a damaged ``last.pt`` costs one checkpoint interval, not the run."""
        try:
            return load_checkpoint(path)
        except ValueError as err:
            previous = path.with_name(PREVIOUS_NAME)
            if self.resume != "auto" or path == previous or not previous.is_file():
                raise
            if self.is_main:
                print(f"warning: {err}; resuming from {previous} instead", file=sys.stderr)
            return load_checkpoint(previous)

    def _data_position(self, sampler: ResumableSampler | None, done: int) -> dict[str, int]:
        """Where this rank's data order stands after ``done`` optimizer steps (stored in checkpoints)."""
        batches = done * self.cfg.accumulate
        if sampler is not None:
            epoch, offset = sampler.position(batches * self.cfg.batch_size)
            return {"epoch": epoch, "offset": offset}
        return {
            "batches": batches,
            "batch_size": self.cfg.batch_size,
            "num_workers": self.cfg.num_workers,
            "world_size": self.world_size,
        }

    def _stream_resume_position(self, pos: dict[str, int], path: Path) -> int:
        """Batches already consumed by each rank, from a checkpoint of a shard-streamed run. The stream's
        order depends on the processes, workers and batch size: resuming exactly needs the same ones."""
        if "batches" not in pos:
            raise ValueError(f"{path} was written by a map-style run; it cannot resume a shard-streamed one")
        cfg = self.cfg
        now = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "world_size": self.world_size}
        changed = {k: (pos[k], v) for k, v in now.items() if pos[k] != v}
        if changed:
            said = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ValueError(
                f"{path}: resuming a shard-streamed run exactly needs the same train.batch_size, "
                f"train.num_workers and number of processes ({said})"
            )
        return int(pos["batches"])

    def _kept_checkpoint(self) -> str:
        name = SHARDED_NAME if self.cfg.strategy == "fsdp" else "last.pt"
        last = self.ckpt_dir / name if self.ckpt_dir is not None else None
        if last is not None and last.exists():
            return f"last good checkpoint kept at {last}"
        return "no checkpoint yet"

    def _check_finite(self, losses: list[tuple[int, torch.Tensor]]) -> None:
        """Raise NonFiniteLossError naming the first step whose loss is NaN/Inf."""
        if not losses:
            return
        values = torch.stack([torch.as_tensor(v).detach().float().reshape(()) for _, v in losses]).tolist()
        for (step, _), value in zip(losses, values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss is {value} at step {step}; training stopped ({self._kept_checkpoint()}). "
                    "Lower train.lr, set train.clip_grad, or check the data."
                )

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        cfg = self.cfg
        seed_everything(cfg.seed + self.rank)
        method = self.method.to(self.device)
        if cfg.channels_last:
            method = method.to(memory_format=torch.channels_last)
        if self.world_size > 1 and cfg.sync_bn:
            method = dist.convert_sync_batchnorm(method)
            self.method = method
        model: nn.Module = method
        fsdp = cfg.strategy == "fsdp"
        unsharded = None
        if fsdp and self.world_size > 1:
            # After training every rank evaluates (each its part of the frozen features) and rank 0
            # exports an ordinary module: keep one on every rank to load the weights into (host memory
            # for one copy of the parameters); rank 0 gathers them, the pipeline broadcasts them.
            unsharded = copy.deepcopy(method).cpu()
            shard_method(method)
        elif self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(method, device_ids=ids)
        forward = torch.compile(model) if cfg.compile else model

        # On CUDA (unsharded) the optimizer skips a non-finite step on the device, from ``found_inf``, with
        # no host sync per step: SGD and AdamW built fused, LARS with its own multi-tensor kernels.
        skip_on_device = self.device.type == "cuda" and not fsdp
        fused = skip_on_device and cfg.optimizer in ("sgd", "adamw")
        self.optimizer = build_optimizer(method, cfg, self.world_size, fused=fused)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        stream = self.dataset if isinstance(self.dataset, ShardStream) else None
        sampler = None
        if stream is None:
            sampler = ResumableSampler(
                len(self.dataset), cfg.batch_size, seed=cfg.seed, rank=self.rank, world_size=self.world_size
            )
        start_batches = 0

        start = 0
        resume_path = self._resume_path()
        if resume_path is not None:
            if resume_path.is_dir():  # a sharded (DCP) checkpoint: loads onto any strategy and world size
                ckpt = load_sharded(resume_path, method, self.optimizer)
            elif fsdp:
                raise ValueError(
                    f"{resume_path}: train.strategy=fsdp resumes from a sharded checkpoint folder "
                    f"(checkpoints/{SHARDED_NAME}), not a single-file one"
                )
            else:
                ckpt = self._load_or_previous(resume_path)
                method.load_state_dict(ckpt["model"])
                self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            # Checkpoints before rng_per_rank held rank 0's state only; they resume as they did.
            per_rank = ckpt.get("rng_per_rank")
            set_rng_state(
                per_rank[self.rank] if per_rank and len(per_rank) == self.world_size else ckpt["rng"]
            )
            start = int(ckpt["step"])
            pos = ckpt["data_position"]
            if sampler is not None:
                if "epoch" not in pos:
                    raise ValueError(f"{resume_path} was written by a shard-streamed run; use the same data")
                sampler.start_epoch, sampler.start_offset = pos["epoch"], pos["offset"]
            else:
                start_batches = self._stream_resume_position(pos, resume_path)
            if self.is_main:
                print(f"resumed from {resume_path} at step {start}/{cfg.steps}")
        elif self.is_main and self.ckpt_dir is not None and (self.ckpt_dir / "last.pt").exists():
            last = self.ckpt_dir / "last.pt"
            print(f"note: starting afresh; {last} will be overwritten (resume=auto continues a run)")

        if stream is not None:
            stream.configure(
                rank=self.rank,
                world_size=self.world_size,
                batch_size=cfg.batch_size,
                start_batches=start_batches,
            )
        loader = pretraining_loader(self.dataset, cfg, sampler, self.collate_fn, self.device)
        batches = iter(loader)
        logger = RunLogger(
            self.run_dir,
            self.is_main,
            self.log_options,
            self.extra_state.get("config"),
            resume_step=start if resume_path is not None else None,  # a resumed run continues its W&B run
        )
        progress = None
        if self.is_main and cfg.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True)

        samples_per_step = cfg.batch_size * cfg.accumulate * self.world_size
        # Reading a loss value forces a host/device sync. On CPU it is free, so every loss is checked
        # before its backward; on CUDA losses stay on the device and are checked at log and
        # checkpoint steps (always before a checkpoint is written, so a bad state is never saved).
        check_every_step = self.device.type != "cuda"
        unchecked: list[tuple[int, torch.Tensor]] = []
        history: list[dict[str, float]] = []
        final_loss = None
        ckpt_path = None
        t_start = t_window = time.perf_counter()
        window_steps = 0
        model.train()
        stop = StopSignals()
        # Agreeing on a signal reads a value back from the device: every step on CPU, at log steps on CUDA.
        stop_check_every = 1 if self.device.type != "cuda" else cfg.log_every
        stop.install()
        guard = NonFiniteGuard(
            method, self.optimizer, cfg.max_nonfinite_steps, self.device, on_device=skip_on_device
        )
        keep_logger = False
        try:
            for step in range(start, cfg.steps):
                logs: dict[str, torch.Tensor | float] = {}
                guard.before_forward()
                step_loss = torch.zeros((), device=self.device)
                for micro in range(cfg.accumulate):
                    # Gradients are all-reduced once per optimizer step: DDP skips the reduction inside
                    # no_sync() and reduces the accumulated gradients on the last micro-step's backward.
                    reduce_now = micro == cfg.accumulate - 1 or not isinstance(model, DistributedDataParallel)
                    sync = nullcontext() if reduce_now else model.no_sync()
                    if fsdp:  # FSDP2's no_sync: reduce-scatter only on the last micro-step's backward
                        set_gradient_sync(method, micro == cfg.accumulate - 1)
                    batch = move_to(next(batches), self.device)
                    if self.batch_transform is not None:
                        with torch.no_grad():
                            batch = self.batch_transform(batch)
                    if cfg.channels_last:
                        batch = to_channels_last(batch)
                    with sync:
                        with autocast_context(self.device, cfg.precision):
                            out = forward(batch)
                        loss = out["loss"]
                        if check_every_step and not guard.enabled:
                            self._check_finite([(step + 1, loss)])
                        (loss / cfg.accumulate).backward()
                        step_loss = step_loss + loss.detach().float()
                    for k, v in out.items():
                        v = v.detach().float() if torch.is_tensor(v) else float(v)
                        logs[k] = logs.get(k, 0.0) + v / cfg.accumulate
                if cfg.clip_grad:
                    logs["grad_norm"] = nn.utils.clip_grad_norm_(method.parameters(), cfg.clip_grad)
                if guard.enabled:
                    guard.step(guard.check(step_loss))
                    logs["skipped_steps"] = guard.skipped
                else:
                    self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                logs["lr"] = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                method.on_train_step_end(step + 1, cfg.steps)
                done = step + 1
                window_steps += 1
                if progress is not None:
                    progress.update(1)
                log_now = done % cfg.log_every == 0 or done == cfg.steps
                ckpt_now = bool(cfg.ckpt_every) and (done % cfg.ckpt_every == 0 or done == cfg.steps)
                if not guard.enabled:
                    unchecked.append((done, logs["loss"]))
                    if log_now or ckpt_now:
                        self._check_finite(unchecked)
                        unchecked.clear()
                elif (check_every_step or log_now or ckpt_now) and guard.too_many():
                    raise NonFiniteLossError(
                        f"{cfg.max_nonfinite_steps} steps in a row up to step {done} had a non-finite "
                        f"loss or gradient and were skipped; training stopped ({self._kept_checkpoint()}). "
                        "Lower train.lr, set train.clip_grad, or check the data "
                        "(train.max_nonfinite_steps: how many bad steps in a row are skipped)"
                    )
                monitored = {}
                if self.is_main:
                    for monitor in self.monitors:
                        if done % monitor.every == 0 or done == cfg.steps:
                            monitored.update(monitor(method))
                if monitored:
                    history.append({"step": done, **monitored})
                    logger.log(done, monitored)
                if log_now:
                    values = {k: float(v) for k, v in logs.items()}
                    final_loss = values["loss"]
                    now = time.perf_counter()
                    values["samples_per_s"] = window_steps * samples_per_step / max(now - t_window, 1e-9)
                    t_window, window_steps = now, 0
                    history.append({"step": done, **values})
                    logger.log(done, values)
                    if progress is not None:
                        progress.set_postfix(
                            loss=f"{values['loss']:.4f}", sps=f"{values['samples_per_s']:.0f}"
                        )
                if ckpt_now:
                    ckpt_path = self.save_checkpoint(done, self._data_position(sampler, done)) or ckpt_path
                    dist.barrier()
                if done < cfg.steps and done % stop_check_every == 0:  # the last step just finishes
                    signum = stop.agreed(self.device)
                    if signum:
                        if not ckpt_now:
                            self._check_finite(unchecked)  # never checkpoint a non-finite state
                            unchecked.clear()
                            ckpt_path = self.save_checkpoint(done, self._data_position(sampler, done))
                            dist.barrier()
                        raise Preempted(signum, done, str(ckpt_path) if ckpt_path is not None else None)
            keep_logger = self.keep_logger_open
        finally:
            stop.restore()
            if progress is not None:
                progress.close()
            if keep_logger:
                logger.flush()
            else:
                logger.close()
        seconds = time.perf_counter() - t_start
        if fsdp and self.world_size > 1:
            full = full_state_dict(method)  # collective: every rank sends its shards to rank 0
            if self.is_main:
                unsharded.load_state_dict(full)
            # the other ranks' copies still hold the initial weights until the pipeline broadcasts rank 0's
            # (mmssl.pipeline.run, before the ranks evaluate together); a Trainer used alone reads rank 0's
            self.method = unsharded
        trained = cfg.steps - start
        return TrainResult(
            steps=cfg.steps,
            final_loss=final_loss,
            history=history,
            seconds=seconds,
            samples_per_s=trained * samples_per_step / max(seconds, 1e-9),
            checkpoint=ckpt_path,
            logger=logger if keep_logger else None,
        )
