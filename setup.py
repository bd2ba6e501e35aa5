"""Packaging: everything is in pyproject.toml except the package list, which pyproject cannot express.

``recipes/`` stays at the top of the checkout (the one, user-facing copy) and ships inside the wheel as
``mmssl/recipes/`` (package data, read with ``importlib.resources``), so ``mmssl run quickstart`` works from
an installed package too. ``[tool.setuptools.packages.find]`` cannot add a package mapped from another
folder, hence this list.
"""

from setuptools import find_namespace_packages, find_packages, setup

RECIPES = ["mmssl.recipes", *(f"mmssl.recipes.{p}" for p in find_namespace_packages(where="recipes"))]

setup(
    packages=[*find_packages(include=["mmssl", "mmssl.*"]), *RECIPES],
    package_dir={"mmssl.recipes": "recipes"},
    package_data={p: ["*.yaml"] for p in RECIPES},
)
