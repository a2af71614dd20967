"""The same scenario and seed give the same day: the same report, profile count included,
apart from the wall-clock run time; also in another process (another hash seed) and while
another process keeps a core busy.

A busy hour at the motorway station (three dual-connector chargers under a tight grid, drivers
arriving every few minutes): many steps where several chargers report at once, which is where
a reallocation timed on the wall clock, a commit coming back from the database thread, the
real-time write-behind and the order of a set made runs differ (196 against 200 profiles).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from simulators.report import build_report
from simulators.runner import run_day
from simulators.scenarios import load_scenario, parse_scenario

# Wall-clock figures: the only ones allowed to differ between two runs.
WALL_CLOCK = {"runtimeSeconds"}
# Real seconds a helper process may take to start (a safety net, not a timing assumption).
START_TIMEOUT = 20.0
RUN_TIMEOUT = 60.0
# A process that keeps one core busy until it is ended; it says so once it spins.
BURNER = "import sys\nprint('spinning', flush=True)\nwhile True:\n    pass\n"


def busy_motorway_hour() -> str:
    shipped = load_scenario("motorway").model_dump(mode="json", by_alias=True, exclude_none=True)
    shipped["durationHours"] = 1
    shipped["generator"]["vehiclesPerHour"] = [30.0] * 24
    shipped["generator"]["dwellMinutes"] = [10, 30]
    return json.dumps(shipped)


def without_wall_clock(report: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key not in WALL_CLOCK}


async def one_day(text: str) -> dict[str, Any]:
    return without_wall_clock(build_report(await run_day(parse_scenario(text))))


@pytest.fixture(scope="module")
def scenario() -> str:
    return busy_motorway_hour()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def first(scenario: str) -> AsyncIterator[dict[str, Any]]:
    """One run on a machine left alone, that the others are compared with."""
    report = await one_day(scenario)
    assert report["profilesSent"] > 100 and report["constrainedSessions"] > 0  # a busy hour
    yield report


@pytest.fixture
def busy_core() -> Iterator[None]:
    """Another process keeps a core busy for the length of the test."""
    burner = subprocess.Popen([sys.executable, "-c", BURNER], stdout=subprocess.PIPE, text=True)
    try:
        assert burner.stdout is not None
        # Spinning once it says so (a blocked read ends when it speaks or dies).
        assert burner.stdout.readline().strip() == "spinning"
        yield
    finally:
        burner.kill()
        burner.wait(timeout=START_TIMEOUT)


async def test_the_same_scenario_twice_gives_the_same_report(
    scenario: str, first: dict[str, Any]
) -> None:
    assert await one_day(scenario) == first


async def test_a_busy_machine_gives_the_same_report(
    scenario: str, first: dict[str, Any], busy_core: None
) -> None:
    assert await one_day(scenario) == first


def test_another_process_gives_the_same_report(
    scenario: str, first: dict[str, Any], tmp_path: Path
) -> None:
    """ev-sim in a process of its own, with another hash seed: set orders differ there."""
    path = tmp_path / "busy-hour.json"
    path.write_text(scenario)
    report = tmp_path / "report.json"
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = [sys.executable, "-m", "simulators.cli", str(path), "--report", str(report)]
    done = subprocess.run(
        [*command, "--no-progress"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert without_wall_clock(json.loads(report.read_text())) == first


def overbooked_evening(*, electrical: bool) -> str:
    """The first two hours of the overbooked depot: forty AC chargers, one- and
    three-phase cars on rotated wiring; with the electrical model (pauses, rotation) or the
    kW-only controller (shares below 6 A)."""
    shipped = load_scenario("overbooked-depot")
    if not electrical:
        shipped = shipped.kw_only()
    data = shipped.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["durationHours"] = 2
    return json.dumps(data)


@pytest.mark.parametrize("electrical", [False, True], ids=["kw-only", "electrical"])
async def test_an_overbooked_ac_evening_twice_gives_the_same_report(electrical: bool) -> None:
    scenario = overbooked_evening(electrical=electrical)
    report = await one_day(scenario)
    assert report["pauses"] > 0 and report["sitePhases"]["peakA"]["L1"] > 0
    assert await one_day(scenario) == report
