"""No import cycles between the modules or the sub-packages of qdbev_core and qdbev_ros.

The import graph is read from the source with ``ast`` (nothing is imported), and it counts every
import statement, including those inside functions: a lazy import hides a cycle from the
interpreter but not from a reader. ``from pkg import name`` where ``pkg.name`` is a module is an
edge to that module; any other ``from pkg import name`` is an edge to ``pkg/__init__.py``, so
re-exports through a package ``__init__`` count. Importing ``pkg.mod`` is not counted as an
edge to ``pkg/__init__.py`` (every package whose ``__init__`` re-exports its modules would
otherwise be a cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qdbev_core", "qdbev_ros")

KNOWN_CYCLES: list[frozenset[str]] = []
"""Tolerated cycles (a cycle must be a subset of one of these): none; add one only with its reason and owner."""


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` of the source file."""

    source: str
    target: str
    line: int


def module_files() -> dict[str, tuple[Path, bool]]:
    """``{dotted module name: (file, is_package)}`` of every ``.py`` file in ``PACKAGES``."""
    mods: dict[str, tuple[Path, bool]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            mods[".".join(parts)] = (path, is_pkg)
    return mods


def _known_prefix(name: str, mods: dict[str, tuple[Path, bool]]) -> str | None:
    """The longest dotted prefix of ``name`` that is one of our modules (None: a third-party import)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _from_base(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from X import ...`` statement in ``module`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges() -> list[Edge]:
    """Every import of one of our modules by another, from all statements (functions included)."""
    mods = module_files()
    edges: list[Edge] = []
    for module, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known_prefix(a.name, mods) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(module, is_pkg, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else _known_prefix(base, mods)
                           for a in node.names]
            edges += [Edge(module, t, node.lineno) for t in targets if t is not None and t != module]
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of ``graph`` with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                comp = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.add(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def package_of(module: str, is_pkg: bool) -> str:
    """The unit of the package-level graph: ``qdbev_core.model`` for ``qdbev_core.model.config``;
    top-level modules (``qdbev_core.geometry``) and the top packages stand for themselves."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and is_pkg) else module


def _describe(cycles: list[set[str]], edges: list[Edge]) -> str:
    lines = []
    for comp in cycles:
        lines.append("cycle: " + ", ".join(sorted(comp)))
        inside = {(e.source, e.line, e.target) for e in edges if e.source in comp and e.target in comp}
        lines += [f"    {s}:{line} -> {t}" for s, line, t in sorted(inside)]
    return "\n".join(lines)


def _unexpected(cycles: list[set[str]]) -> list[set[str]]:
    return [c for c in cycles if not any(c <= known for known in KNOWN_CYCLES)]


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    """Guard for the reader itself: a known lazy import and a package re-export are edges."""
    edges = {(e.source, e.target) for e in import_edges()}
    assert ("qdbev_core.cli.models", "qdbev_core.models_manifest") in edges  # inside a function
    assert ("qdbev_core.model", "qdbev_core.model.detector") in edges  # package __init__ re-export
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycle_between_modules() -> None:
    edges = import_edges()
    graph: dict[str, set[str]] = {m: set() for m in module_files()}
    for e in edges:
        graph[e.source].add(e.target)
    bad = _unexpected(strongly_connected(graph))
    assert not bad, "import cycles (move the shared code down, do not hide the import):\n" + _describe(bad, edges)


def test_no_import_cycle_between_packages() -> None:
    mods = module_files()
    unit = {m: package_of(m, is_pkg) for m, (_, is_pkg) in mods.items()}
    graph: dict[str, set[str]] = {u: set() for u in unit.values()}
    lifted = []
    for e in import_edges():
        a, b = unit[e.source], unit[e.target]
        if a != b:
            graph[a].add(b)
            lifted.append(Edge(a, b, e.line))
    bad = _unexpected(strongly_connected(graph))
    assert not bad, "package-level import cycles:\n" + _describe(bad, lifted)


def test_library_code_does_not_import_the_command_line() -> None:
    """The ``qdbev`` CLI sits on top: experiments, training and the rest call library functions,
    never ``qdbev_core.cli`` (only the entry points and ``qdbev_ros.cli``, which adds the ROS verbs)."""
    allowed = {"qdbev_core.__main__", "qdbev_ros.cli", "qdbev_ros.__main__"}
    bad = sorted({f"{e.source}:{e.line} imports {e.target}" for e in import_edges()
                  if (e.target == "qdbev_core.cli" or e.target.startswith("qdbev_core.cli."))
                  and not e.source.startswith("qdbev_core.cli") and e.source not in allowed})
    assert not bad, bad
