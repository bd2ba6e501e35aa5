"""The layering rules, checked on the real import graph.

Edges are every ``import`` / ``from ... import`` in a module's source, at any depth (inside functions
too), plus the registry's lazy loads: a module that uses a registry (``METHODS``, ``ENCODERS``,
``DATASETS``, ``EVALUATORS``) can reach every module its tables name. A rule forbids a package from
reaching another through any path of such edges.

* ``mmssl.core`` knows no modality: nothing from modalities, semi, crossmodal, train, cli, pipeline or the
  recipe schema.
* ``mmssl.data`` (the generic data layer) likewise.
* ``mmssl.train`` (the trainer) nothing from modalities, semi, crossmodal, the recipe schema, cli or
  pipeline: its own options live in ``mmssl.train.config``.
* ``mmssl.eval`` (the modality-free evaluators) nothing from modalities, the CLI, pipeline or recipe schema.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

from mmssl import registry

ROOT = Path(__file__).resolve().parents[1] / "mmssl"
REGISTRY_NAMES = set(registry.REGISTRIES)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module or ``module.attribute``) starts with."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def registry_targets(known: dict[str, Path]) -> set[str]:
    """Every module the built-in tables name (what a registry lookup may import)."""
    targets = set()
    for module in registry.table_modules():
        table = importlib.import_module(module)
        for attr in registry.REGISTRIES:
            for entry in getattr(table, attr, {}).values():
                target = entry[0] if isinstance(entry, tuple) else entry
                targets.add(resolve(target.partition(":")[0], known))
    return {t for t in targets if t}


def import_graph() -> dict[str, set[str]]:
    known = all_modules()
    lazy = registry_targets(known)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
                if base == "mmssl.registry" and any(a.name in REGISTRY_NAMES for a in node.names):
                    graph[name] |= lazy
            for target in targets:
                resolved = resolve(target, known)
                if resolved and resolved != name:
                    graph[name].add(resolved)
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module reachable from ``start`` -> the module that imports it on one path (for messages)."""
    seen: dict[str, str] = {}
    stack = [start]
    while stack:
        node = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt not in seen and nxt != start:
                seen[nxt] = node
                stack.append(nxt)
    return seen


def path_to(seen: dict[str, str], start: str, end: str) -> str:
    chain = [end]
    while chain[-1] != start:
        chain.append(seen[chain[-1]])
    return " -> ".join(reversed(chain))


MODALITY_CODE = ("mmssl.modalities", "mmssl.semi", "mmssl.crossmodal")
ENTRY_POINTS = ("mmssl.cli", "mmssl.pipeline", "mmssl.config")
RULES = {
    "mmssl.core": (*MODALITY_CODE, "mmssl.train", *ENTRY_POINTS),
    "mmssl.data": (*MODALITY_CODE, "mmssl.train", *ENTRY_POINTS),
    "mmssl.train": (*MODALITY_CODE, *ENTRY_POINTS),
    "mmssl.eval": (*MODALITY_CODE, *ENTRY_POINTS),
}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


@pytest.mark.parametrize("package", sorted(RULES))
def test_layering(graph: dict[str, set[str]], package: str) -> None:
    forbidden = RULES[package]
    violations = []
    for module in sorted(m for m in all_modules() if m == package or m.startswith(package + ".")):
        seen = reachable(graph, module)
        for target in sorted(seen):
            if target.startswith(forbidden):
                violations.append(path_to(seen, module, target))
                break
    assert not violations, f"{package} reaches forbidden code:\n" + "\n".join(violations)


def test_the_graph_sees_function_level_and_lazy_imports(graph: dict[str, set[str]]) -> None:
    """The checker itself: an import inside a function and a registry lookup both count as edges."""
    # mmssl.cli imports the pipeline inside its command functions only.
    assert "mmssl.pipeline" in graph["mmssl.cli"]
    # mmssl.config looks components up in the registry: it reaches modality code through the tables.
    seen = reachable(graph, "mmssl.config")
    assert any(m.startswith("mmssl.modalities.video") for m in seen)


def test_every_table_target_is_a_module_of_the_tree() -> None:
    known = all_modules()
    for module in registry.table_modules():
        table = importlib.import_module(module)
        for attr in registry.REGISTRIES:
            for name, entry in getattr(table, attr, {}).items():
                target = (entry[0] if isinstance(entry, tuple) else entry).partition(":")[0]
                assert target in known, f"{module}: {name} -> {target}"
