"""Run logging on rank 0: ``metrics.jsonl`` and TensorBoard always, Weights & Biases when the recipe asks.

The recipe's ``log`` section (absent: no W&B)::

    log: {wandb: {project: NAME, mode: offline, entity: null, name: null}}

Every logger gets the same scalars at the same steps (``train/<key>`` in TensorBoard and W&B), and the same
images: every PNG the run writes (``figures/**/*.png``, ``loss_curve.png``) is handed once to
:meth:`RunLogger.log_figure` (by :func:`mmssl.figures.hand_new_figures_to`, the one place that does it) and
lands in TensorBoard (``add_image``) and W&B (``wandb.Image``) under ``figures/<file stem>``. W&B is an
optional extra (``pip install mmssl[wandb]``); ``mode: offline`` writes the run under ``WANDB_DIR`` (else
the run directory) for a later ``wandb sync``, ``disabled`` turns it off without editing the section.

Resuming (``resume=auto``) continues the same W&B run: its id is kept in ``RUN_DIR/wandb_run_id`` (a small
file written atomically, not in the checkpoint, so that a checkpoint stays the same with and without W&B,
and an FSDP run's sharded checkpoint needs nothing extra), and a trainer that resumes from a checkpoint
calls ``wandb.init(id=..., resume="allow")`` with it. A fresh start (no checkpoint) begins a new W&B run and
replaces the file.

W&B's history only grows: a step lower than the last one logged is refused (online, with a warning and the
values dropped). A run preempted at step ``n`` resumes from its last checkpoint ``k <= n`` and trains steps
``k+1..n`` again. Those repeated steps are written to ``metrics.jsonl`` and TensorBoard as before (readers
keep the last value of a step) but not to W&B, which keeps the values the first attempt logged for them (the
same trajectory: a resumed run repeats the data order and random streams); every step after ``n`` is logged
to W&B as usual. ``n`` is the last step in ``metrics.jsonl``, which is written before the other loggers. So
nothing is refused or raises, whether the run is online or offline (an offline run has no server to ask
which step W&B reached, and each attempt writes its own ``offline-run-*-<id>`` folder: ``wandb sync`` them
in order).
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


WANDB_RUN_ID_FILE = "wandb_run_id"


def last_logged_step(metrics: Path) -> int | None:
    """The last step in a ``metrics.jsonl`` (``None``: no file, no step); a line cut short by a kill is
    skipped."""
    if not metrics.is_file():
        return None
    for line in reversed(metrics.read_text().splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _write_atomically(path: Path, text: str) -> None:
    """A reader (a resume after a kill) sees the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _hwc_uint8(image: Any) -> Any:
    """A PNG path or an image array (HW, HWC; uint8, or float in [0, 1]) as an HWC uint8 RGB array, the
    form TensorBoard's ``add_image(..., dataformats="HWC")`` takes."""
    import numpy as np

    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr[:, :, :3]


class RunLogger:
    """metrics.jsonl + TensorBoard (+ W&B when ``options.wandb`` is set) on rank 0; a no-op elsewhere.

    ``resume_step``: the step of the checkpoint the trainer resumed from (``None``: a fresh start); a resumed
    logger continues the W&B run named in ``RUN_DIR/wandb_run_id`` (see the module docstring).
    """

    def __init__(
        self,
        run_dir: Path | None,
        enabled: bool,
        options: LogOptions | None = None,
        config: dict[str, Any] | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled and run_dir is not None
        self.tb = None
        self.wandb_run = None
        self._wandb: Any = None
        # The last step logged (figures go there by default) and the first step W&B still accepts.
        self.step = resume_step or 0
        self._wandb_from_step = 0
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.path = run_dir / "metrics.jsonl"
            wb = options.wandb if options is not None else None
            if wb is not None and wb.mode != "disabled":
                # Imported before anything else starts, so that a missing extra fails first.
                self._wandb = import_wandb()
                self._start_wandb(self._wandb, wb, run_dir, config, resume_step)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a declared dependency; stay usable without it
                self.tb = None

    def _start_wandb(
        self,
        wandb: Any,
        wb: WandbOptions,
        run_dir: Path,
        config: dict[str, Any] | None,
        resume_step: int | None,
    ) -> None:
        """A new W&B run, or (resuming, with ``wandb_run_id`` there) the run the first attempt started."""
        id_file = run_dir / WANDB_RUN_ID_FILE
        run_id = None
        if resume_step is not None and id_file.is_file():
            run_id = id_file.read_text().strip() or None
        self.wandb_run = wandb.init(
            project=wb.project,
            entity=wb.entity,
            name=wb.name,
            mode=wb.mode,
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
        )
        _write_atomically(id_file, self.wandb_run.id + "\n")
        if run_id is None:
            return
        reached = last_logged_step(self.path) or 0
        self._wandb_from_step = reached + 1
        if reached > (resume_step or 0):
            print(
                f"W&B run {run_id} continues: it holds steps up to {reached}, so steps "
                f"{(resume_step or 0) + 1}..{reached} trained again after resuming go to metrics.jsonl "
                "and TensorBoard only"
            )

    def log(self, step: int, values: dict[str, float]) -> None:
        """Scalars at ``step`` to every logger (to W&B only past the steps it already holds)."""
        if not self.enabled:
            return
        self.step = max(self.step, step)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)
        if self.wandb_run is not None and step >= self._wandb_from_step:
            # Values logged twice at one step (monitors, then losses) land in one W&B history row.
            self.wandb_run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def log_figure(self, image: str | Path | Any, key: str, step: int | None = None) -> None:
        """An image (a PNG's path, or an HW / HWC array) to TensorBoard and W&B under ``key`` (e.g.
        ``figures/loss_curve``) at ``step`` (default: the last step logged, so a run's figures sit with its
        final values). Not in metrics.jsonl, which holds scalars only."""
        if not self.enabled:
            return
        step = self.step if step is None else step
        if self.tb is not None:
            self.tb.add_image(key, _hwc_uint8(image), step, dataformats="HWC")
        if self.wandb_run is not None:
            picture = self._wandb.Image(str(image) if isinstance(image, (str, Path)) else image)
            self.wandb_run.log({key: picture}, step=max(step, self._wandb_from_step))

    def flush(self) -> None:
        """Write what TensorBoard buffers (the loggers stay open)."""
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        """Close TensorBoard and finish the W&B run; a second call does nothing."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
