"""Where generated data and derived results are cached: one root for every modality.

Procedural datasets, ACD decompositions, sound-texture statistics and tokenizers are written once under
``$MMSSL_CACHE`` (default ``~/.cache/mmssl``), each in its own sub-folder keyed by its parameters.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder(name: str = "") -> Path:
    """``$MMSSL_CACHE/<name>`` or ``~/.cache/mmssl/<name>`` (read at call time, so tests can redirect it)."""
    base = os.environ.get("MMSSL_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "mmssl"
    return root / name if name else root
