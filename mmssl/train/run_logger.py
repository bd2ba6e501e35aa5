"""Run logging on rank 0: ``metrics.jsonl`` and TensorBoard always, Weights & Biases when the recipe asks.

The recipe's ``log`` section (absent: no W&B)::

    log: {wandb: {project: NAME, mode: offline, entity: null, name: null}}

Every logger gets the same scalars at the same steps (``train/<key>`` in TensorBoard and W&B). W&B is an
optional extra (``pip install mmssl[wandb]``); ``mode: offline`` writes the run under ``WANDB_DIR`` (else
the run directory) for a later ``wandb sync``, ``disabled`` turns it off without editing the section.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmssl.errors import ConfigError

WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class WandbOptions:
    """``log.wandb``: a Weights & Biases run next to metrics.jsonl and TensorBoard."""

    project: str
    mode: str = "offline"  # offline | online | disabled
    entity: str | None = None
    name: str | None = None  # the run's display name (None: W&B picks one)


@dataclass
class LogOptions:
    """The recipe's ``log`` section: optional loggers besides metrics.jsonl and TensorBoard."""

    wandb: WandbOptions | None = None


def import_wandb() -> Any:
    """The ``wandb`` module, or a ConfigError saying how to install the extra."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            "the recipe's 'log.wandb' section needs Weights & Biases, which is not installed: "
            "pip install mmssl[wandb] (or remove log.wandb)"
        ) from None
    return wandb


class RunLogger:
    """metrics.jsonl + TensorBoard (+ W&B when ``options.wandb`` is set) on rank 0; a no-op elsewhere."""

    def __init__(
        self,
        run_dir: Path | None,
        enabled: bool,
        options: LogOptions | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.enabled = enabled and run_dir is not None
        self.tb = None
        self.wandb_run = None
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.path = run_dir / "metrics.jsonl"
            wb = options.wandb if options is not None else None
            if wb is not None and wb.mode != "disabled":
                wandb = import_wandb()  # before anything else starts, so a missing extra fails first
                self.wandb_run = wandb.init(
                    project=wb.project,
                    entity=wb.entity,
                    name=wb.name,
                    mode=wb.mode,
                    dir=os.environ.get("WANDB_DIR") or str(run_dir),
                    config=config,
                )
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a declared dependency; stay usable without it
                self.tb = None

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)
        if self.wandb_run is not None:
            # Values logged twice at one step (monitors, then losses) land in one W&B history row.
            self.wandb_run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
