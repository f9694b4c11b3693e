"""What may import what (docs/architecture/architecture.md, "Code layers and the import rule").

The imports are read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` statement, including those inside functions and under ``TYPE_CHECKING``, since
a lazy import is still a dependency. Checked:

1. every top-level module or package of ``music_platform`` belongs to a layer of ``LAYERS``;
2. a package imports only the packages ``may_import`` allows it;
3. the pure layers (foundation and core) never reach Dagster or dbt, directly or through any
   chain of ``music_platform`` modules;
4. no import cycle between modules, nor between packages.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "music_platform"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# The layers, lowest first: a layer may import the layers below it, never those above.
FOUNDATION = {"config", "identity", "audio_features"}
CORE = {"warehouse", "sources", "quality", "recommender", "serving"}
ORCHESTRATION = {"policies", "partitions", "resources", "transformation", "lib", "runs", "defs", "definitions"}
ENTRY = {"cli", "demo", "operator_errors"}
LAYERS = {"foundation": FOUNDATION, "core": CORE, "orchestration": ORCHESTRATION, "entry": ENTRY}

# Inside the core, the direction of the arrows (each also may import the foundation).
CORE_MAY_IMPORT = {
    "warehouse": set(),
    "sources": {"warehouse"},
    "quality": {"warehouse", "sources"},
    "recommender": {"warehouse"},
    "serving": {"warehouse", "recommender"},
}
# Third-party top-level modules the pure layers never import.
ORCHESTRATION_LIBRARIES = {
    "dagster",
    "dagster_dbt",
    "dagster_postgres",
    "dagster_snowflake",
    "dagster_webserver",
    "dbt",
}

# Imports that break the rule today, each with why and who removes it. The test fails when one
# disappears, so that it is struck off here too.
KNOWN_VIOLATIONS = {
    ("recommender", "serving"): (
        "recommender/publication.py writes the publication that serving/published.py defines; "
        "the contract should move to a module both import (issue 15, serving and recommender)"
    ),
}


def may_import(package: str) -> set[str]:
    """The packages ``package`` may import."""
    if package in FOUNDATION:
        return set()
    if package in CORE:
        return FOUNDATION | CORE_MAY_IMPORT[package]
    if package in ORCHESTRATION:
        return FOUNDATION | CORE | ORCHESTRATION
    return FOUNDATION | CORE | ORCHESTRATION | ENTRY


@cache
def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The module a dotted import name refers to (``a.b.c`` may be the name ``c`` in ``a.b``)."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = path.name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@cache
def imports(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> everything it imports: modules of the package, and third-party top-level names."""
    known = modules(root)
    package = root.name
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, path, node)
                # `from pkg import submodule` imports the submodule
                names = [f"{source}.{alias.name}" for alias in node.names] if source.startswith(package) else [source]
            else:
                continue
            for name in names:
                targets.add(_resolve(name, known) if name.split(".")[0] == package else name.split(".")[0])
        targets.discard(module)
        graph[module] = targets
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if t.split(".")[0] == PACKAGE} for m, targets in graph.items()}


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the imports that make the edge."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, targets in internal(imports()).items():
        for target in targets:
            source, dest = package_of(module), package_of(target)
            if source != dest and "<root>" not in (source, dest):
                edges[(source, dest)].append(f"{module} -> {target}")
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one node (cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


# -- the rules --------------------------------------------------------------------------------


def test_every_top_level_module_has_a_layer():
    top_level = {package_of(m) for m in modules()} - {"<root>"}
    layered = set().union(*LAYERS.values())
    assert not top_level - layered, (
        f"{sorted(top_level - layered)} belong to no layer: add them to LAYERS here and to the table in "
        "docs/architecture/architecture.md"
    )
    assert not layered - top_level, f"LAYERS names modules that do not exist: {sorted(layered - top_level)}"


def test_packages_import_only_what_their_layer_allows():
    broken = {
        edge: sites
        for edge, sites in package_edges().items()
        if edge[1] not in may_import(edge[0]) and edge not in KNOWN_VIOLATIONS
    }
    assert not broken, "imports against the layer rule:\n" + "\n".join(
        f"{a} may not import {b}: {', '.join(sorted(sites))}" for (a, b), sites in sorted(broken.items())
    )


def test_known_violations_still_exist():
    """Struck off ``KNOWN_VIOLATIONS`` once fixed, so the list never hides a new one."""
    edges = package_edges()
    fixed = [edge for edge in KNOWN_VIOLATIONS if edge not in edges]
    assert not fixed, f"{fixed} no longer happen: remove them from KNOWN_VIOLATIONS"


@pytest.mark.parametrize("package", sorted(FOUNDATION | CORE))
def test_pure_layers_never_reach_dagster_or_dbt(package):
    """Directly or through any chain of music_platform modules (lazy imports included)."""
    graph = imports()
    starts = [m for m in modules() if package_of(m) == package]
    came_from: dict[str, str | None] = dict.fromkeys(starts)
    queue = list(starts)
    while queue:
        module = queue.pop()
        for target in graph[module]:
            if target.split(".")[0] != PACKAGE:
                if target in ORCHESTRATION_LIBRARIES:
                    chain = [target, module]
                    while came_from[chain[-1]] is not None:
                        chain.append(came_from[chain[-1]])
                    pytest.fail(f"{package} reaches {target}: {' <- '.join(chain)}")
            elif target not in came_from:
                came_from[target] = module
                queue.append(target)


def test_serving_never_imports_the_definitions():
    assert not [(a, b) for a, b in package_edges() if a == "serving" and b in ORCHESTRATION]


def test_no_import_cycle_between_modules():
    cycles = strongly_connected(internal(imports()))
    assert not cycles, f"modules that import each other (directly or in a ring): {cycles}"


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in package_edges():
        if (a, b) not in KNOWN_VIOLATIONS:
            graph[a].add(b)
    assert not strongly_connected(graph), strongly_connected(graph)


# -- the checker itself -------------------------------------------------------------------------


def test_the_checker_finds_a_cycle_and_leaves_a_chain_alone():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg.b import g\n",  # a lazy import
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import c\ndef g(): ...\n",
        "sub/__init__.py": "from . import c\n",  # relative, naming a module
        "sub/c.py": "import dagster as dg\nfrom ..a import f\n",  # relative to the parent
    }
    for name, text in files.items():
        (root / name).write_text(text)
    graph = imports(root)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"typing", "pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"dagster", "pkg.a"},
    }
    internal_only = {m: {t for t in ts if t.startswith("pkg")} for m, ts in graph.items()}
    assert strongly_connected(internal_only) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert may_import("sources") == FOUNDATION | {"warehouse"}
