"""The layers stay clean (issue 10): the pure packages never import I/O, no module imports itself
through a circle.  Read from the source with :mod:`ast` (every ``import``, including those inside
functions and under ``TYPE_CHECKING``), so nothing is imported to check it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "fixup"
PURE = ("fixup.errors", "fixup.wire", "fixup.proto", "fixup.policy", "fixup.lab.pptp_peer")
IO_MODULES = ("socket", "asyncio", "subprocess", "netfilterqueue", "pyroute2", "selectors", "threading")
PROTOCOL = ("fixup.wire", "fixup.proto")  # the wire formats and state machines know no policy file
SHELLS = ("fixup.io", "fixup.lab", "fixup.bench", "fixup.cli")


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = module_names()


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports: fixup modules by full name, others by their top level."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            found.add(target if target.startswith("fixup") else target.split(".")[0])
    return {t for t in found if t != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
    assert "fixup.wire.pptp_messages" in GRAPH["fixup.wire.pptp"]
    assert "socket" in GRAPH["fixup.io.control"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if under(n, PURE)))
def test_pure_modules_do_no_io(name):
    reached = closure(name)
    assert not reached & set(IO_MODULES), f"{name} reaches {sorted(reached & set(IO_MODULES))}"
    assert not [m for m in reached if under(m, SHELLS)], f"{name} reaches the I/O shells"
    if under(name, PROTOCOL):
        assert not [m for m in reached if under(m, ("fixup.policy",))], f"{name} reaches the policy loader"


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                circles.append(sorted([v, *component]))

    for name in MODULES:
        if name not in index:
            visit(name)
    assert circles == []
