"""Reading torch files without running code: the one loader for checkpoints and encoder files.

``torch.save`` writes a pickle, and unpickling can call any function the file names. ``weights_only=True``
makes ``torch.load`` resolve only tensors, containers and plain values; anything else is refused. Its
refusal, though, is a long message that suggests loading again with ``weights_only=False`` (that is,
running the file's code). :func:`load_weights` refuses with a :class:`~mmssl.errors.CorruptFileError`
naming the file and what it would have called instead, and never offers that way out.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from mmssl.errors import CorruptFileError

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_OPERAND = re.compile(r"Unsupported operand \d+|Unsupported class [\w.]+")


def refusal(err: pickle.UnpicklingError) -> str:
    """The reason, in one line, for a ``weights_only`` refusal ``err``."""
    text = str(err)
    named = _GLOBAL.search(text)
    if named:
        return (
            f"refused: not a weights-only file, loading it would call {named.group(1)}; "
            "mmssl loads tensors and plain values only, never code"
        )
    other = _OPERAND.search(text)
    detail = f": {other.group(0)}" if other else ""
    return (
        f"refused: not a weights-only torch file{detail}; it may hold code, and mmssl loads "
        "tensors and plain values only"
    )


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a :class:`~mmssl.errors.CorruptFileError` naming ``path``
    when it is not such a file (a pickle that would run code, a file cut short, anything else), and a
    FileNotFoundError when there is no file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says more
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CorruptFileError(path, refusal(err)) from None
    except Exception as err:  # a truncated zip, not a torch file at all ...
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CorruptFileError(
            path, f"not a readable torch file: {type(err).__name__}: {lines[0] if lines else ''}"
        ) from err


__all__ = ["load_weights", "refusal"]
