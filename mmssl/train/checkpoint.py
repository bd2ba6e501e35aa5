"""The one checkpoint format: a plain dict of tensors and primitives, written atomically.

``torch.load(path, weights_only=True)`` reads it: loading a checkpoint never runs code.

Keys: ``format``, ``step``, ``model`` (the method's state dict, encoder included under
``encoder.``), ``optimizer``, ``scheduler``, ``rng`` (torch / CUDA / numpy / python states),
``data_position`` (epoch, offset of the sampler), ``config`` (the resolved recipe), ``encoder_spec``
(name and kwargs to rebuild the encoder alone; :func:`mmssl.encoders.load_encoder` reads it).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmssl.errors import CorruptFileError
from mmssl.safe_load import load_weights

FORMAT = "mmssl-checkpoint-v1"


PREVIOUS_NAME = "previous.pt"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the checkpoints already there are intact."""


def _write_complete(obj: Any, path: Path) -> str:
    """``obj`` saved and fsynced to a new temporary file next to ``path``; its name. Nothing is left behind
    when writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return tmp


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A run killed mid-write leaves the previous file intact (``os.replace`` is atomic on POSIX).
    """
    path = Path(path)
    _replace_or_clean(_write_complete(obj, path), path)


def _replace_or_clean(tmp: str, path: Path) -> None:
    """Rename ``tmp`` over ``path``; if even that fails, remove ``tmp`` (``path`` is then unchanged)."""
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_keeping_previous(obj: Any, path: str | Path) -> None:
    """Write ``obj`` to ``path`` as :func:`atomic_save` does, and keep the file it replaces as
    ``previous.pt`` next to it: a ``last.pt`` found unreadable later (a disk error, a truncated copy) still
    has a fallback. The new file is complete before either rename (renames need no space), so a full
    disk raises :class:`CheckpointWriteError` with ``last.pt`` and ``previous.pt`` untouched."""
    path = Path(path)
    try:
        tmp = _write_complete(obj, path)
    except OSError as err:
        raise CheckpointWriteError(
            f"could not write checkpoint {path} ({err.strerror or err}); {path.name} and {PREVIOUS_NAME} "
            "there are unchanged"
        ) from err
    if path.exists():
        try:
            os.replace(path, path.with_name(PREVIOUS_NAME))
        except BaseException:
            os.unlink(tmp)
            raise
    _replace_or_clean(tmp, path)  # interrupted just before: resume=auto takes previous.pt


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_s = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_s["key"].numpy().astype(np.uint32),
            np_s["pos"],
            np_s["has_gauss"],
            np_s["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an mmssl checkpoint (weights only); a clear error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = load_weights(path, map_location)
    except CorruptFileError as err:  # truncated, not a torch file, or a pickle that would run code
        raise ValueError(f"cannot read checkpoint {path}: {err.reason}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mmssl checkpoint (expected format '{FORMAT}')")
    return ckpt
