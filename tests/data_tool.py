"""Loading a ``data_tools/`` script as a module, so tests call its ``main(argv)`` in process."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_data_tool(name: str) -> ModuleType:
    """``data_tools/<name>.py`` imported under the module name ``name``."""
    path = Path(__file__).resolve().parents[1] / "data_tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
