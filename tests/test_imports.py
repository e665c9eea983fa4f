"""Module boundaries: no import cycle in src/ (function-level imports count), ``ops/`` imports
nothing else of the package, ``deploy/`` nothing of ``train/``.

The graph is read from the source (the AST of every module), not from ``sys.modules``, so a
cycle hidden in a function that no test happens to call is still found. Imports inside
``if TYPE_CHECKING:`` are left out: they never run (annotations only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "spikedelay"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every module in ``modules`` that an import statement anywhere in ``tree`` runs.

    ``from pkg import sub`` is an edge to ``pkg.sub`` when that is a module (the package itself
    is a parent, always imported first, as for ``import pkg.sub``), else to ``pkg``.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                sub = f"{module}.{a.name}"
                found.add(sub if sub in modules else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    files = {_module_name(p, src): p for p in (src / PACKAGE).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        named = _imports(ast.parse(path.read_text()), name, path.name == "__init__.py",
                         set(files))
        graph[name] = {m for m in named if m in files and m != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a → … → a) per strongly connected component of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(set(c), graph) for c in components]


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first, back to start
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("a strongly connected component always holds a cycle")


def test_the_checker_finds_cycles_through_function_level_imports(tmp_path):
    """The checker itself: a cycle made only by an import inside a function is found, one
    behind TYPE_CHECKING is not."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from spikedelay import b\n")
    (pkg / "b.py").write_text("def f():\n    from spikedelay.c import g\n")
    (pkg / "c.py").write_text("import spikedelay.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from spikedelay.e import E\n")
    (pkg / "e.py").write_text("from . import d\n")
    graph = import_graph(tmp_path)
    assert graph["spikedelay.e"] == {"spikedelay.d"}
    assert graph["spikedelay.a"] == {"spikedelay.b"}
    assert find_cycles(graph) == [["spikedelay.a", "spikedelay.b", "spikedelay.c",
                                   "spikedelay.a"]]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("spikedelay.ops", "every other module of spikedelay"),
    ("spikedelay.deploy", "spikedelay.train"),
])
def test_layers_import_one_way(layer, forbidden):
    bad = []
    for module, deps in import_graph().items():
        if module != layer and not module.startswith(layer + "."):
            continue
        for dep in deps:
            if layer == "spikedelay.ops":
                wrong = dep != layer and not dep.startswith(layer + ".")
            else:
                wrong = dep == forbidden or dep.startswith(forbidden + ".")
            if wrong:
                bad.append(f"{module} imports {dep}")
    assert not bad, f"{layer} must not import {forbidden}:\n" + "\n".join(sorted(bad))
