"""Errors shared by every part of the toolkit.

``DataError`` and ``CorruptFileError`` derive from ``ValueError`` so callers that only know "bad input"
can catch them generically, while the CLI can single them out and print the message (which always names
the offending file, folder or key) without a traceback. ``ConfigError`` is a recipe or option that
cannot be used; library code raises it too (a nested section checked when a recipe loads), so it lives
here rather than in the recipe schema.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A recipe, override or option that cannot be used; the message names the key."""


class DataError(ValueError):
    """A dataset cannot be built: missing folder, no samples, mismatched splits, bad option."""


class CorruptFileError(ValueError):
    """One file could not be decoded. ``path`` is the file; the message names it too."""

    def __init__(self, path: str | Path, reason: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        message = f"corrupt or unreadable file: {self.path}"
        super().__init__(f"{message} ({reason})" if reason else message)
