"""controller/core/ is a pure core (docs/architecture.md): no I/O, no event loop, no clock,
no randomness. Time comes in each event's ``now``; ids come in the events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import controller.core
from tests.purity import clock_reads, has_async_code, imported_modules

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


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) >= 10
    return found


def test_no_io_clock_or_randomness_modules_are_imported() -> None:
    for path in modules():
        banned = {name.split(".")[0] for name in imported_modules(path)} & FORBIDDEN_MODULES
        assert not banned, f"{path.relative_to(PACKAGE)} imports {sorted(banned)}"


def test_only_pure_project_modules_are_imported() -> None:
    for path in modules():
        for name in imported_modules(path):
            if name.split(".")[0] in ("allocator", "protocol", "controller", "simulators"):
                assert name.startswith(ALLOWED_PROJECT_MODULES), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )


def test_no_clock_is_read() -> None:
    for path in modules():
        assert not clock_reads(path), path.relative_to(PACKAGE)


def test_no_async_code() -> None:
    for path in modules():
        assert not has_async_code(path), path.relative_to(PACKAGE)


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
