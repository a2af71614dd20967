"""controller/core/ is a pure core (docs/architecture.md): no I/O, no event loop, no clock,
no randomness. Time comes in each event's ``now``; ids come in the events."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import controller.core

PACKAGE = Path(controller.core.__file__).parent
FORBIDDEN_MODULES = {
    "aiohttp",
    "asyncio",
    "concurrent",
    "os",
    "random",
    "secrets",
    "shell",
    "socket",
    "sqlite3",
    "threading",
    "time",
    "uuid",
    "websockets",
}
# Inside the project the core may lean only on the other pure packages and the config model.
ALLOWED_PROJECT_MODULES = ("allocator", "protocol", "controller.core", "controller.config")
CLOCK_READS = {"now", "utcnow", "today", "monotonic", "perf_counter", "time", "time_ns"}


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) >= 10
    return found


def imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_io_clock_or_randomness_modules_are_imported() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        banned = {name.split(".")[0] for name in imports(tree)} & FORBIDDEN_MODULES
        assert not banned, f"{path.relative_to(PACKAGE)} imports {sorted(banned)}"


def test_only_pure_project_modules_are_imported() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for name in imports(tree):
            if name.split(".")[0] in ("allocator", "protocol", "controller", "simulators"):
                assert name.startswith(ALLOWED_PROJECT_MODULES), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )


def test_no_clock_is_read() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert not calls & CLOCK_READS, path.relative_to(PACKAGE)


def test_no_async_code() -> None:
    for path in modules():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        assert not any(
            isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith)
            for node in ast.walk(tree)
        ), path.relative_to(PACKAGE)


def test_importing_the_core_loads_no_io_library() -> None:
    # Transitively too: nothing the core imports pulls in the event loop or a database.
    probe = (
        "import sys, controller.core.station; "
        "print(sorted(m for m in ('asyncio', 'sqlite3', 'websockets', 'aiohttp') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
