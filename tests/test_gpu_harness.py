"""The GPU check scripts (benchmarks/gpu_check.py, throughput.py, gpu_session.sh) on the CPU: what counts as
a skip and what as a failure, and that they run from a checkout where mmssl is not installed (a bare GPU
image). Their CUDA figures need a GPU; these tests keep the harness itself from wasting one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from mmssl.errors import DataError
from mmssl.registry import RegistryError

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raised_from(outer: Exception, cause: BaseException) -> Exception:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except Exception as err:
        return err


@pytest.mark.parametrize(
    "err, skipped",
    [
        (ModuleNotFoundError("No module named 'av'", name="av"), True),
        (FileNotFoundError("../shared/data/images/cifar10/train"), True),
        (DataError("image folder not found: ../shared/data/x"), True),
        # the registry wraps a module whose optional dependency is missing: still a skip
        (
            _raised_from(
                RegistryError("could not import encoder module"), ImportError("x", name="soundfile")
            ),
            True,
        ),
        # mmssl itself not importing means nothing was checked: a failure, never a skip
        (ModuleNotFoundError("No module named 'mmssl'", name="mmssl"), False),
        (ModuleNotFoundError("No module named 'mmssl.pipeline'", name="mmssl.pipeline"), False),
        (ValueError("shapes do not match"), False),
        (DataError("corrupt image: a.jpg"), False),
    ],
)
def test_what_gpu_check_counts_as_missing_input(err, skipped):
    assert _load("gpu_check").is_missing_input(err) is skipped


def test_throughput_leaves_out_lightly_where_it_is_not_installed(monkeypatch):
    throughput = _load("throughput")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "lightly" else real(n, *a))
    assert throughput.default_loops() == ["mmssl", "bare"]


def test_gpu_check_trains_a_recipe_from_a_checkout_without_mmssl_installed(tmp_path):
    """The child finds mmssl through the script's own sys.path entry: ``-S`` skips site (so mmssl's editable
    install is not seen) and PYTHONPATH names only site-packages (torch and the other dependencies), as on
    a GPU image that has PyTorch but no mmssl installed."""
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    out = tmp_path / "run"
    script, recipe = ROOT / "benchmarks" / "gpu_check.py", ROOT / "recipes" / "quickstart.yaml"
    command = [sys.executable, "-S", str(script), "--one", str(recipe), "--steps", "2", "--device", "cpu"]
    proc = subprocess.run(
        [*command, "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["status"] in ("ok", "skipped"), result
    if result["status"] == "skipped":  # no data on this machine; the import itself must have worked
        assert "mmssl" not in result["error"], result
    else:
        assert result["steps"] == 2 and result["samples_per_s"] > 0


def test_gpu_session_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_session.sh")], check=True)
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)


def test_gpu_check_settings_set_precision_layout_and_compile_whatever_the_recipe_says():
    from mmssl.cli import resolve_recipe
    from mmssl.config import load_recipe

    gpu_check = _load("gpu_check")
    expected = {
        "fp32": ("fp32", False, False),
        "bf16": ("bf16", False, False),
        "bf16+cl": ("bf16", True, False),
        "bf16+cl+compile": ("bf16", True, True),
    }
    assert set(gpu_check.SETTINGS) == {"recipe", *expected}
    for recipe in ("quickstart", "quickstart_gpu"):  # channels_last off in one, on in the other
        path = resolve_recipe(recipe)
        as_written = load_recipe(path).train
        unchanged = load_recipe(path, gpu_check.SETTINGS["recipe"]).train
        assert (unchanged.precision, unchanged.channels_last) == (
            as_written.precision,
            as_written.channels_last,
        )
        for name, (precision, channels_last, compiled) in expected.items():
            train = load_recipe(path, gpu_check.SETTINGS[name]).train
            assert (train.precision, train.channels_last, train.compile) == (
                precision,
                channels_last,
                compiled,
            )


def test_gpu_check_prints_one_row_per_recipe_and_setting_with_the_ratio_to_the_first(capsys):
    gpu_check = _load("gpu_check")
    argv = ["quickstart", "--device", "cpu", "--steps", "2", "--settings", "fp32", "bf16", "--no-throughput"]
    assert gpu_check.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| quickstart |")]
    assert [row.split("|")[2].strip() for row in rows] == ["fp32", "bf16"]
    assert rows[0].split("|")[5].strip() == "1.00" and float(rows[1].split("|")[5]) > 0
