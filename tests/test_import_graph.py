"""The package's import graph, read from the source (ast): no cycles, no private names taken from
another module, Ray and DuckDB each behind one module, no module named like an API function."""

from __future__ import annotations

import ast
from pathlib import Path

import datafilter

PACKAGE = Path(datafilter.__file__).resolve().parent
# Public API functions (datafilter.__all__) and names a reader would take for one.
API_NAMES = {*datafilter.__all__, "evaluate", "combine", "describe"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement executed at some point (module level or inside functions), not
    those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for each alias of the statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append((sub, None) if sub in MODULES else (base, alias.name))
    return out


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]], dict[str, set[str]]]:
    """Edges between datafilter modules, private names taken across modules, and which modules
    import which third-party top-level packages."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    private: list[tuple[str, str, str]] = []
    third_party: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree):
            for target, name in _targets(module, node):
                top = target.split(".")[0]
                if top != "datafilter":
                    third_party.setdefault(top, set()).add(module)
                    continue
                resolved = target
                while resolved not in MODULES and "." in resolved:
                    resolved = resolved.rsplit(".", 1)[0]
                if resolved != module:
                    edges[module].add(resolved)
                    if name and name.startswith("_") and not name.startswith("__"):
                        private.append((module, resolved, name))
    return edges, private, third_party


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_every_module() -> None:
    edges, _, third_party = _graph()
    assert len(MODULES) > 60
    assert "datafilter.stages.select" in edges["datafilter.api"]
    assert "datafilter.runtime" in third_party["ray"]


def test_no_import_cycle_inside_datafilter() -> None:
    edges, _, _ = _graph()
    assert _cycles(edges) == []


def test_a_cycle_would_be_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module() -> None:
    _, private, _ = _graph()
    assert private == []


def test_only_runtime_imports_ray_and_only_aggregate_imports_duckdb() -> None:
    _, _, third_party = _graph()
    assert third_party["ray"] == {"datafilter.runtime"}
    assert third_party["duckdb"] == {"datafilter.aggregate"}


def test_no_top_level_module_is_named_like_an_api_function() -> None:
    top = {name.split(".")[1] for name in MODULES if name.count(".") == 1}
    assert top & API_NAMES == set()
    assert {"stages", "scorers", "selectors", "kenlm", "correlation", "reference", "io"} <= top
