"""The same scenario and seed give the same day: the same report, profile count included.

A busy hour at the motorway station (three dual-connector chargers under a tight grid, drivers
arriving every few minutes): many steps where several chargers report at once, which is where
a reallocation timed on the wall clock used to split or merge differently from run to run.
"""

from __future__ import annotations

import json
from typing import Any

from simulators.report import build_report
from simulators.runner import run_day
from simulators.scenarios import load_scenario, parse_scenario

# Wall-clock figures: the only ones allowed to differ between two runs.
WALL_CLOCK = {"runtimeSeconds"}


def busy_motorway_hour() -> str:
    shipped = load_scenario("motorway").model_dump(mode="json", by_alias=True, exclude_none=True)
    shipped["durationHours"] = 1
    shipped["generator"]["vehiclesPerHour"] = [30.0] * 24
    shipped["generator"]["dwellMinutes"] = [10, 30]
    return json.dumps(shipped)


async def one_day(text: str) -> dict[str, Any]:
    report = build_report(await run_day(parse_scenario(text)))
    return {key: value for key, value in report.items() if key not in WALL_CLOCK}


async def test_the_same_scenario_twice_gives_the_same_report() -> None:
    text = busy_motorway_hour()
    first = await one_day(text)
    second = await one_day(text)
    assert first["profilesSent"] > 0 and first["constrainedSessions"] > 0  # a busy hour
    assert second == first
