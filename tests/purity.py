"""Reading a module's source for what a pure core must not do: import I/O, read a clock,
or await (docs/architecture.md). Shared by the purity tests of each package."""

from __future__ import annotations

import ast
from pathlib import Path

# Calls that read a clock, whatever they are called on.
CLOCK_READS = {"now", "utcnow", "today", "monotonic", "perf_counter", "time", "time_ns"}


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text("utf-8"), filename=str(path))


def imported_modules(path: Path) -> set[str]:
    """The dotted names of the modules a file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def clock_reads(path: Path) -> set[str]:
    calls = {
        node.func.attr
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    return calls & CLOCK_READS


def has_async_code(path: Path) -> bool:
    return any(
        isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith)
        for node in ast.walk(_tree(path))
    )
