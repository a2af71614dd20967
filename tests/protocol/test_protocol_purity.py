"""protocol/ is a pure core (architecture note 1): no I/O, no event loop, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import protocol

PACKAGE = Path(protocol.__file__).parent
FORBIDDEN_MODULES = {"asyncio", "socket", "websockets", "aiohttp", "sqlite3", "time", "threading"}
CLOCK_READS = {"now", "utcnow", "today", "monotonic", "perf_counter", "time"}


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 10
    return found


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_io_or_clock_modules_are_imported() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        banned = imported_roots(tree) & FORBIDDEN_MODULES
        assert not banned, f"{path.relative_to(PACKAGE)} imports {sorted(banned)}"


def test_no_clock_is_read() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        calls = [
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        ]
        assert not set(calls) & CLOCK_READS, path.relative_to(PACKAGE)


def test_no_async_code() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        assert not any(
            isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith)
            for node in ast.walk(tree)
        ), path.relative_to(PACKAGE)
