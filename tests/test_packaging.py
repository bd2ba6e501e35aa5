"""The wheel built from the checkout carries the recipes (package data ``mmssl/recipes``, built from the one
copy at the top of the checkout), and an install of it runs ``mmssl list`` / ``mmssl run quickstart`` from
an empty folder with no checkout in sight."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(REPO / "recipes").as_posix() for p in (REPO / "recipes").rglob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel . --no-deps --no-build-isolation`` of a copy of the sources (a build in the checkout would
    leave build/ and *.egg-info there, and a stale build/lib could hide a file missing from the wheel)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("mmssl", "recipes"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-w", str(out), "-q"],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("mmssl-*.whl")
    return path


def test_wheel_carries_the_recipes(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n[len("mmssl/recipes/") :] for n in names if n.startswith("mmssl/recipes/"))
    assert "quickstart.yaml" in shipped
    assert shipped == RECIPES  # every recipe, nothing else
    assert not any(n.startswith("recipes/") for n in names)  # no top-level package named "recipes"
    modules = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "mmssl").rglob("*.py"))
    assert sorted(n for n in names if n.endswith(".py")) == modules
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["mmssl"]


# Asserts that mmssl comes from the install (sys.argv[1]), not the checkout's editable install, then runs the
# CLI with the remaining arguments.
CLI = (
    "import sys, mmssl, mmssl.cli;"
    "assert mmssl.__file__.startswith(sys.argv[1]), mmssl.__file__;"
    "sys.exit(mmssl.cli.main(sys.argv[2:]))"
)
TINY = [
    "train.steps=2",
    "train.batch_size=16",
    "train.num_workers=0",
    "train.progress=false",
    "data.train_per_class=6",
    "data.test_per_class=4",
    "data.image_size=16",
    "eval.few_shot.seeds=1",
    "eval.few_shot.shots=[1]",
    "eval.knn.k=5",
    "eval.linear.epochs=2",
]


@pytest.mark.slow
def test_installed_wheel_runs_quickstart_outside_a_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target)]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), MMSSL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=empty, env=env, capture_output=True, text=True, timeout=300
        )

    where = python("-c", "import mmssl, mmssl.cli; print(mmssl.__file__); print(*mmssl.cli.recipe_dirs())")
    assert where.returncode == 0, where.stderr
    module, dirs = where.stdout.splitlines()
    assert Path(module).is_relative_to(target)
    assert dirs == str(target / "mmssl" / "recipes")  # the package data only: no ./recipes, no checkout

    listed = python("-c", CLI, str(target), "list")
    assert listed.returncode == 0, listed.stderr
    recipes = listed.stdout.split("methods:")[0].split()[1:]
    assert recipes == sorted(r[: -len(".yaml")] for r in RECIPES)

    ran = python("-c", CLI, str(target), "run", "quickstart", *TINY, "out_dir=run")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (empty / "run" / "metrics.json").is_file() and (empty / "run" / "encoder.pt").is_file()
    assert sorted(p.name for p in empty.iterdir()) == ["run"]  # nothing from the checkout was needed
