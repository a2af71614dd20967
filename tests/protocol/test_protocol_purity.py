"""protocol/ is a pure core (docs/architecture.md): no I/O, no event loop, no clock."""

from __future__ import annotations

from pathlib import Path

import protocol
from tests.purity import clock_reads, has_async_code, imported_modules

PACKAGE = Path(protocol.__file__).parent
FORBIDDEN_MODULES = {"asyncio", "socket", "websockets", "aiohttp", "sqlite3", "time", "threading"}


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 10
    return found


def test_no_io_or_clock_modules_are_imported() -> None:
    for path in modules():
        banned = {name.split(".")[0] for name in imported_modules(path)} & FORBIDDEN_MODULES
        assert not banned, f"{path.relative_to(PACKAGE)} imports {sorted(banned)}"


def test_no_clock_is_read() -> None:
    for path in modules():
        assert not clock_reads(path), path.relative_to(PACKAGE)


def test_no_async_code() -> None:
    for path in modules():
        assert not has_async_code(path), path.relative_to(PACKAGE)
