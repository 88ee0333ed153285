"""The package's layers go one way, and its modules form no cycle (README: Architecture).

Every import in every module of ``simroll/`` is read from its syntax tree, function-level
imports included, so a late import cannot hide an upward dependency. The only exception is
an import under ``if TYPE_CHECKING:`` from a view to ``simroll.run``: annotations only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "simroll"

# bottom to top; a module may import its own layer or any layer below it
LAYERS: list[tuple[str, ...]] = [
    ("simroll.errors", "simroll._io", "simroll._display", "simroll._version"),
    ("simroll.scenario",),
    ("simroll.sim",),
    ("simroll.check",),
    ("simroll.run",),
    ("simroll.explore",),
    ("simroll.view",),
    ("simroll.cli", "simroll.pytest_plugin", "simroll.__main__", "simroll"),
]
# imports allowed under `if TYPE_CHECKING:` that would otherwise go up a layer
TYPE_ONLY_UP = {("simroll.view", "simroll.run")}
# heavy or foreign libraries, and the only layers that may import them
CONFINED = {
    "simpy": ("simroll.sim",),
    "matplotlib": ("simroll.view",),
    "numpy": ("simroll.view",),
    "hypothesis": ("simroll.explore",),
    "yaml": ("simroll.scenario", "simroll.explore.sweep"),
    "pydantic": ("simroll.scenario", "simroll.check.invariants"),
}


def layer_of(module: str) -> int:
    """Index of the layer holding ``module`` (the longest matching prefix wins)."""
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    if best is None:
        raise AssertionError(f"{module}: in no layer; add it to LAYERS in tests/test_layers.py")
    return best


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[str, int, bool]]:
    """(imported module, line, only for type checking) for every import in ``source``."""
    tree = ast.parse(source)
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno, type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno, type_only))
            if target.split(".")[0] == "simroll":  # `from simroll.view import plots` imports a module
                out.extend((f"{target}.{alias.name}", node.lineno, type_only) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    # importlib.import_module("simroll.x") is an import too
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.args[0].value, node.lineno, False))
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layering_problems(modules: dict[str, str], packages: frozenset[str] = frozenset()) -> list[str]:
    """Every upward import, confined-library breach and import cycle among ``modules`` (name -> source)."""
    problems: list[str] = []
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name in sorted(modules):
        for target, line, type_only in imports_of(modules[name], name, name in packages):
            root = target.split(".")[0]
            if root in CONFINED:
                if not any(name == m or name.startswith(m + ".") for m in CONFINED[root]):
                    problems.append(f"{name}:{line}: imports {target} (only {', '.join(CONFINED[root])} may)")
                continue
            if root != "simroll" or target == "simroll" and name != "simroll":
                if target == "simroll":
                    problems.append(f"{name}:{line}: imports the facade 'simroll'; import the module it re-exports")
                continue
            if target not in modules:  # `from simroll.x import name`: the name is not a module
                continue
            if target == name:
                continue
            lo, hi = layer_of(target), layer_of(name)
            if lo > hi:
                allowed = type_only and any(name.startswith(a) and target.startswith(b) for a, b in TYPE_ONLY_UP)
                if not allowed:
                    problems.append(
                        f"{name}:{line}: imports {target}, a layer above it ({LAYERS[lo][0]} over {LAYERS[hi][0]})"
                    )
                continue
            if not type_only and name != "simroll":  # the facade re-exports; it is no dependency
                graph.add_edge(name, target)
    for cycle in sorted(sorted(c) for c in nx.simple_cycles(graph)):
        problems.append("import cycle: " + " -> ".join(cycle + cycle[:1]))
    return problems


def test_every_import_goes_down_a_layer_and_nothing_forms_a_cycle():
    found = _modules()
    sources = {name: path.read_text(encoding="utf-8") for name, path in found.items()}
    packages = frozenset(n for n, p in found.items() if p.name == "__init__.py")
    assert layering_problems(sources, packages) == []


def test_every_module_sits_in_a_layer():
    """A new module (or a renamed room) must be placed in LAYERS, or the rule above cannot judge it."""
    placed = {name: layer_of(name) for name in _modules()}  # layer_of fails on a module in no layer
    assert placed["simroll.sim.kernel"] < placed["simroll.check.invariants"] < placed["simroll.view.report"]


@pytest.mark.parametrize(
    "source, expected",
    [
        # a late (function-level) import of a view from the runner
        (
            "def f():\n    from simroll.view.html import summary_html\n",
            "simroll.run:2: imports simroll.view.html, a layer above it (simroll.view over simroll.run)",
        ),
        # importlib with a literal name is an import as well
        (
            "import importlib\nimportlib.import_module('simroll.explore.search')\n",
            "simroll.run:2: imports simroll.explore.search, a layer above it (simroll.explore over simroll.run)",
        ),
        # matplotlib outside the views
        ("import matplotlib.pyplot\n", "simroll.run:1: imports matplotlib.pyplot (only simroll.view may)"),
    ],
)
def test_the_check_catches_an_upward_import(source, expected):
    modules = {"simroll.run": source, "simroll.view.html": "", "simroll.explore.search": ""}
    assert layering_problems(modules) == [expected]


def test_the_check_allows_annotations_only_from_views_to_run():
    view = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from simroll.run import RunResult\n"
    assert layering_problems({"simroll.view.report": view, "simroll.run": ""}) == []
    check = view.replace("RunResult", "RunResult as R")
    assert layering_problems({"simroll.check.invariants": check, "simroll.run": ""}) == [
        "simroll.check.invariants:3: imports simroll.run, a layer above it (simroll.run over simroll.check)"
    ]


def test_the_check_finds_a_cycle_within_a_layer():
    modules = {"simroll.sim.a": "import simroll.sim.b\n", "simroll.sim.b": "def f():\n    import simroll.sim.a\n"}
    assert layering_problems(modules) == ["import cycle: simroll.sim.a -> simroll.sim.b -> simroll.sim.a"]
