"""The manual clock wakes sleepers in order; the pure modules stay free of I/O."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shell.clock import ManualClock, sleep_until
from tests.purity import imported_modules

SIMULATORS = Path(__file__).resolve().parents[2] / "simulators"
PURE = [
    "profiles.py",
    "connector.py",
    "vehicles.py",
    "charger.py",
    "messages.py",
    "scenarios.py",
    "site.py",
]
FORBIDDEN = {"asyncio", "websockets", "aiohttp", "socket", "time", "sqlite3", "threading"}


async def test_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = ManualClock(start=1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("b", 20), ("a", 10), ("c", 30)]]
    await asyncio.sleep(0)
    assert clock.next_wakeup() == 1010.0
    clock.advance(20)
    await asyncio.wait(tasks[:2])
    assert woke == [("a", 1020.0), ("b", 1020.0)]
    tasks[2].cancel()
    await asyncio.wait(tasks[2:])
    assert clock.next_wakeup() is None
    with pytest.raises(ValueError):
        clock.set(0)


async def test_sleep_until_a_moment_already_past_returns_at_once() -> None:
    clock = ManualClock(start=0.0)
    clock.advance(100)
    await asyncio.wait_for(sleep_until(clock, 50), timeout=1)


def imports(name: str) -> set[str]:
    """Modules imported by ``simulators/<name>``, following imports within simulators."""
    seen: set[str] = set()
    todo = [name]
    found: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in imported_modules(SIMULATORS / current):
            found.add(module.split(".")[0])
            if module.startswith("simulators."):
                todo.append(module.removeprefix("simulators.") + ".py")
    return found


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io(name: str) -> None:
    assert not imports(name) & FORBIDDEN
