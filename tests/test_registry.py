"""The registry: unknown names suggest the closest one; a built-in module that fails to import is skipped
and named in the error of a later lookup (instead of breaking every other modality)."""

from __future__ import annotations

import pytest

from mmssl import registry
from mmssl.registry import METHODS, RegistryError


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(RegistryError, match="did you mean 'simclr'"):
        METHODS.get("simclrr")


def test_failed_builtin_import_is_skipped_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "mmssl.modalities.no_such_modality"
    monkeypatch.setattr(registry, "_BUILTIN_MODULES", (*registry._BUILTIN_MODULES, missing))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "IMPORT_ERRORS", {})
    with pytest.warns(RuntimeWarning, match=missing):
        names = METHODS.names()
    assert "simclr" in names  # the other modules still registered their components
    with pytest.raises(RegistryError, match=f"{missing} could not be imported"):
        METHODS.get("not_a_method")
