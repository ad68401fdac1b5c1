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
