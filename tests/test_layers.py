"""proxy imports routing, never the reverse: the engine must stay usable without the edge."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_routing_never_imports_the_edge_or_litestar() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p) & {"proxy", "litestar"})
        for p in (ROOT / "routing").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_edge_does_use_the_engine() -> None:
    assert "routing" in imported_roots(ROOT / "proxy" / "app.py")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The routing modules `path` imports, wherever the import stands (a lazy import is still a dependency)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def test_the_engine_has_no_import_cycles() -> None:
    """A module below never imports one above it: backends are built by the kinds registry with their guard,
    and the health loop takes them as a protocol (the old circle was anthropic -> backends -> health ->
    backends). A package's __init__ re-exporting its own modules is not a cycle."""
    files = {_module(p): p for p in (ROOT / "routing").rglob("*.py")}
    known = set(files)
    graph = {m: {d for d in _imports(p, known) if d != m and not (p.name == "__init__.py" and d.startswith(m + "."))
                 and not m.startswith(d + ".")}
             for m, p in files.items()}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        for d in sorted(graph[m]):
            if d in path:
                cycles.append([*path[path.index(d):], d])
            elif len(path) < 40:
                visit(d, [*path, d])

    for start in sorted(graph):
        visit(start, [start])
        if cycles:
            break
    assert not cycles, f"import cycle: {' -> '.join(cycles[0])}"


def test_routing_is_grouped_into_its_architecture() -> None:
    packages = {p.name for p in (ROOT / "routing").iterdir() if (p / "__init__.py").exists()}
    assert {"upstream", "vote", "decide", "strategies", "thinking"} <= packages
    flat = sorted(p.stem for p in (ROOT / "routing").glob("*.py") if p.stem != "__init__")
    assert len(flat) <= 16, f"{len(flat)} modules at the top of routing/: {flat}"
