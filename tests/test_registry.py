"""The registry: unknown names suggest the closest one; tables are read without importing components; a
module that fails to import is named in the error of the lookup that needed it (other names still work);
loading an image encoder imports no video, point-cloud or text code."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from mmssl import registry
from mmssl.registry import DATASETS, ENCODERS, EVALUATORS, METHODS, Registry, RegistryError


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(RegistryError, match="did you mean 'simclr'"):
        METHODS.get("simclrr")


def test_every_table_entry_resolves_to_a_callable() -> None:
    for reg in (METHODS, ENCODERS, DATASETS, EVALUATORS):
        for name in reg.names():
            assert callable(reg.get(name)), f"{reg.kind} '{name}' -> {reg.target_of(name)}"


def test_table_entries_point_into_their_own_package() -> None:
    """A table lists only its own package's components (the registry's lazy loads follow the layering)."""
    for module in registry.table_modules():
        package = module.rsplit(".", 1)[0]
        table = __import__(module, fromlist=["_"])
        for attr in registry.REGISTRIES:
            for name, entry in getattr(table, attr, {}).items():
                target = entry[0] if isinstance(entry, tuple) else entry
                assert target.startswith(package + "."), f"{module}: {name} -> {target}"


def test_failed_import_is_named_and_other_names_still_work() -> None:
    reg = Registry("method")
    reg.register("broken", "mmssl.modalities.no_such_modality.methods:thing")
    reg.register("fine", "mmssl.core.losses:nt_xent")
    assert reg.names() == ["broken", "fine"]  # listing imports nothing
    with pytest.raises(RegistryError, match="no_such_modality.methods:thing failed"):
        reg.get("broken")
    assert callable(reg.get("fine"))


def test_a_third_party_table_registers_its_entries() -> None:
    table = types.SimpleNamespace(MODALITY="sonar", METHODS={"pingback": "mmssl.core.losses:nt_xent"})
    reg_before = METHODS._targets.copy(), METHODS._modality.copy()
    try:
        registry.add_table(table, "test table")
        assert METHODS.modality_of("pingback") == "sonar"
        assert "pingback" in METHODS.names("sonar")
    finally:
        METHODS._targets, METHODS._modality = reg_before


def test_a_malformed_table_entry_is_named() -> None:
    table = types.SimpleNamespace(METHODS={"oops": "no_colon_here"})
    with pytest.raises(RegistryError, match="METHODS\\['oops'\\]"):
        registry.add_table(table, "bad table")


PROBE = """
import sys
from mmssl.registry import ENCODERS, METHODS
names = METHODS.names() + ENCODERS.names()          # listing reads the tables only
assert "crw" in names and "dgcnn" in names
enc = ENCODERS.build("small_cnn", widths=[4, 8])
from mmssl.encoders import load_encoder, save_encoder
others = ("video", "pointcloud", "text", "audio")
tables = {f"mmssl.modalities.{m}{s}" for m in others for s in ("", ".components")}
heavy = sorted(
    m for m in sys.modules
    if (m.startswith(tuple(f"mmssl.modalities.{o}" for o in others))
        or m.split(".")[0] in ("decord", "open3d", "transformers", "coacd"))
    and m not in tables
)
print("HEAVY", heavy)
"""


def test_loading_an_image_encoder_imports_no_other_modality() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("HEAVY"))
    assert line == "HEAVY []", line
