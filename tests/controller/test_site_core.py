"""The site behind the connection, in the station core (docs/site.md): the charging budget
from the grid meter, its hold time, a silent meter, and the external limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import config_from_dict
from controller.core.commands import LimitAnswer, Notice, Refusal, SessionAnswer
from controller.core.events import (
    ExternalLimitRequested,
    SessionStartRequested,
    SessionUpdateRequested,
    SiteMeterRead,
)
from controller.core.site import ExternalLimit, MeterState, SiteBudget
from controller.core.state import JournalEntry
from controller.repository import Repository
from tests.controller.core_harness import T0, CoreHarness

# 250 kW connection, three 100 kW chargers, margin 5 kW, hold 10 s, silent after 10 s.
SITE: dict[str, Any] = {
    "stationId": "OFFICE",
    "gridCapacity": 250,
    "chargers": [{"id": f"CP{i}", "maxPower": 100, "connectors": 1} for i in (1, 2, 3)],
    "site": {
        "meter": {"type": "push"},
        "holdSeconds": 10,
        "margin": 5,
        "meterTimeout": 10,
        "fallbackPower": 60,
    },
}


def harness(**changes: Any) -> CoreHarness:
    return CoreHarness(config_from_dict({**SITE, **changes}))


def journaled(h: CoreHarness, kind: str) -> list[dict[str, Any]]:
    return [r.data for r in h.written if isinstance(r, JournalEntry) and r.kind == kind]


def meter_state(h: CoreHarness) -> MeterState:
    return h.core.meter_state


def start_three(h: CoreHarness) -> None:
    for i in (1, 2, 3):
        answer = h.ask(lambda t, i=i: SessionStartRequested(h.now, t, f"CP{i}", 0, None, f"s{i}"))
        assert isinstance(answer, SessionAnswer)


def read(h: CoreHarness, building: float) -> None:
    """The meter sees the building plus what the sessions draw (their limits: no vehicle
    has reported a reading, so they count at their limits), less what the battery gives."""
    battery = 0.0 if h.core.battery is None else h.core.battery.flow().power
    h.handle(SiteMeterRead(h.now, building + h.core.load() - battery))


def test_without_a_reading_the_budget_is_the_fallback() -> None:
    h = harness()
    assert meter_state(h) is MeterState.STALE
    start_three(h)
    assert h.core.available_power == 60
    assert h.core.allocated_power() == 60


def test_the_budget_is_the_connection_minus_the_building_and_the_margin() -> None:
    h = harness()
    start_three(h)
    read(h, 40)
    assert meter_state(h) is MeterState.OK
    # 250 - 40 - 5: the three 100 kW chargers share 205 kW.
    assert h.core.available_power == 205
    assert h.core.allocated_power() == 205


def test_a_rise_lowers_at_once_and_a_fall_raises_only_after_the_hold_time() -> None:
    h = harness()
    start_three(h)
    read(h, 40)
    assert h.core.available_power == 205
    h.advance(1)
    read(h, 100)  # a kettle, a lift, a heat pump: the site would be over its limit
    assert h.core.available_power == 145
    for _ in range(9):
        h.advance(1)
        read(h, 40)
        assert h.core.available_power == 145  # still within the hold window
    h.advance(1.5)
    read(h, 40)
    assert h.core.available_power == 205


def test_a_raise_is_due_without_a_new_reading() -> None:
    """The hold ends between two readings of a slow meter: the core's own wake-up raises."""
    h = harness(site={**SITE["site"], "meterTimeout": 60})
    start_three(h)
    read(h, 100)
    h.advance(5)
    read(h, 40)
    assert h.core.available_power == 145
    assert h.wakeup is not None and h.wakeup <= h.now + 5
    h.advance(5.5)
    assert h.core.available_power == 205


def test_solar_export_raises_the_budget_above_the_connection() -> None:
    h = harness()
    start_three(h)
    read(h, -80)  # the roof exports 80 kW more than the building takes
    assert h.core.available_power == 325  # 250 + 80 - 5
    assert h.core.allocated_power() == 300  # what the three chargers can take


def test_the_battery_is_not_counted_as_building_load() -> None:
    h = harness(battery={"initialCapacity": 100, "power": 50})
    start_three(h)
    read(h, 40)
    # The battery covers what the chargers draw above the share: the meter reads less, and
    # the building is still 40 kW.
    assert h.core.available_power == 205 + 50
    battery = h.core.battery
    assert battery is not None and battery.flow().power == pytest.approx(50)
    h.advance(1)
    read(h, 40)
    site = h.core.site
    assert site is not None and site.last is not None
    assert site.last.power == pytest.approx(40 + 255 - 50)
    assert site.last.non_charging_load == pytest.approx(40)
    assert h.core.available_power == 205 + 50


def test_a_silent_meter_falls_back_and_a_returning_one_restores_the_budget() -> None:
    h = harness()
    start_three(h)
    read(h, 40)
    assert h.core.available_power == 205
    h.advance(10.5)  # no reading for longer than meterTimeout: the wake-up finds it silent
    assert meter_state(h) is MeterState.STALE
    assert h.core.available_power == 60
    h.flush()
    assert journaled(h, "site.meter") == [
        {"state": "ok", "lastReadingAt": T0},
        {"state": "stale", "lastReadingAt": T0},
    ]
    assert meter_state(h) is MeterState.STALE
    h.advance(1)
    read(h, 40)
    assert meter_state(h) is MeterState.OK
    assert h.core.available_power == 205


def test_vehicle_readings_count_as_charging_not_as_building() -> None:
    h = harness()
    start_three(h)
    for i in (1, 2, 3):
        h.ask(lambda t, i=i: SessionUpdateRequested(h.now, t, f"s{i}", consumed_power=30))
    h.handle(SiteMeterRead(h.now, 90 + 50))
    site = h.core.site
    assert site is not None and site.last is not None
    assert site.last.non_charging_load == pytest.approx(50)
    assert h.core.available_power == 195


def test_an_implausible_reading_is_ignored_and_said_once() -> None:
    """A wrong scale reads a huge export: taken as such it would lift the budget without
    bound. Beyond ten times the connection either way, a reading is ignored; with nothing
    better the meter goes silent and the fallback holds."""
    h = harness()
    start_three(h)
    read(h, 40)
    assert h.core.available_power == 205
    notices = []
    for _ in range(3):
        h.advance(1)
        commands = h.handle(SiteMeterRead(h.now, -40_000))
        notices += [c for c in commands if isinstance(c, Notice)]
    assert h.core.available_power == 205  # unchanged
    assert len(notices) == 1 and "beyond ±2500 kW" in notices[0].message
    h.advance(8)  # nothing plausible for longer than meterTimeout
    assert meter_state(h) is MeterState.STALE
    assert h.core.available_power == 60


# -- per phase -------------------------------------------------------------------------------


def test_the_busiest_phase_bounds_the_budget_when_currents_are_read() -> None:
    """A building whose single-phase loads sit on L1: 150 A there, 50 A on the others, with a
    400 A limit per phase. The station draws evenly on the three phases, so L1's 250 A of
    headroom bound it (172.5 kW), before the 250 kW connection does (187.5 kW)."""
    h = harness(gridCurrentLimit=400)
    start_three(h)
    load = h.core.load()
    station_amps = load * 1000 / 690
    building = (150.0, 50.0, 50.0)
    power = sum(building) * 0.23 + load
    currents = (building[0] + station_amps, building[1] + station_amps, building[2] + station_amps)
    h.handle(SiteMeterRead(h.now, power, currents))
    site = h.core.site
    assert site is not None and site.last is not None
    assert site.last.non_charging_currents == pytest.approx(building)
    assert site.share(h.now) == pytest.approx(172.5 - 5)
    assert h.core.available_power == 167


def test_without_a_meter_the_current_limit_bounds_each_phase() -> None:
    h = CoreHarness(config_from_dict({**SITE, "site": {}, "gridCurrentLimit": 300}))
    start_three(h)
    # The kW root stays the connection; the electrical model holds each phase to 300 A, which
    # chargers drawing evenly on the three phases reach at 207 kW (300 A x 3 x 230 V).
    assert h.core.available_power == 250
    assert h.core.allocated_power() == 207
    booked = h.core.phase_bookings()
    assert booked is not None and max(booked.values()) <= 300


# -- the external limit ----------------------------------------------------------------------


def set_limit(h: CoreHarness, kw: float | None, until: float | None = None) -> Any:
    return h.ask(lambda t: ExternalLimitRequested(h.now, t, kw, until, "curtailment", "dso"))


def test_an_external_limit_caps_the_root_until_it_expires() -> None:
    h = CoreHarness(config_from_dict({**SITE, "site": {}}))
    start_three(h)
    assert h.core.available_power == 250
    answer = set_limit(h, 120, until=h.now + 60)
    assert isinstance(answer, LimitAnswer) and answer.limit is not None
    assert answer.limit.max_power == 120
    assert h.core.available_power == 120 and h.core.allocated_power() == 120
    # Written with the change, before the answer.
    assert journaled(h, "limit.external.set") == [
        {"maxPower": 120, "until": h.now + 60, "reason": "curtailment", "by": "dso"}
    ]
    h.advance(61)
    assert h.core.external_limit is None
    assert h.core.available_power == 250
    h.flush()
    assert journaled(h, "limit.external.expired") == [{"maxPower": 120, "by": "dso"}]


def test_an_external_limit_caps_the_grid_and_the_battery_works_on_top() -> None:
    """A curtailment of the connection: the chargers get the capped grid plus the battery,
    and the battery does not charge from the grid beyond the cap."""
    h = CoreHarness(
        config_from_dict({**SITE, "site": {}, "battery": {"initialCapacity": 100, "power": 50}})
    )
    start_three(h)
    set_limit(h, 120)
    assert h.core.available_power == 170  # 120 from the grid, 50 from the battery
    assert h.core.grid_power() == pytest.approx(120)
    battery = h.core.battery
    assert battery is not None and battery.flow().power == pytest.approx(50)
    h.advance(600)  # 8.3 kWh out of the battery
    for i in (1, 2, 3):
        h.ask(lambda t, i=i: SessionUpdateRequested(h.now, t, f"s{i}", consumed_power=10))
    # 30 kW drawn: the battery refills from the 90 kW left under the cap, at its 50 kW.
    assert battery.flow().power == pytest.approx(-50)
    assert h.core.grid_power() == pytest.approx(80)


def test_an_external_limit_is_cleared_and_refused_in_the_past() -> None:
    h = CoreHarness(config_from_dict({**SITE, "site": {}}))
    start_three(h)
    refused = set_limit(h, 100, until=h.now - 1)
    assert isinstance(refused, Refusal) and refused.error.field == "until"
    assert h.core.external_limit is None
    set_limit(h, 100)
    assert h.core.available_power == 100
    cleared = set_limit(h, None)
    assert isinstance(cleared, LimitAnswer) and cleared.limit is None
    assert h.core.available_power == 250


def test_an_external_limit_survives_a_restart_until_it_expires(tmp_path: Path) -> None:
    """Written to a real database and read back, as a restart does."""
    config = config_from_dict({**SITE, "site": {}})
    h = CoreHarness(config)
    set_limit(h, 90, until=h.now + 3600)
    repository = Repository(tmp_path / "controller.db")
    repository.write(h.written)
    stored = repository.load()
    assert stored.external_limit == ExternalLimit(90, h.now + 3600, "curtailment", "dso", h.now)
    again = CoreHarness(config, now=h.now + 60, stored=stored)
    assert again.core.available_power == 90
    late = CoreHarness(config, now=h.now + 7200, stored=stored)
    assert late.core.external_limit is None
    assert late.core.available_power == 250
    # The expiry found at start-up is written: the next start finds no limit.
    repository.write(late.written)
    assert repository.load().external_limit is None
    cleared = CoreHarness(config, now=h.now + 60, stored=stored)
    set_limit(cleared, None)
    repository.write(cleared.written)
    assert repository.load().external_limit is None


# -- the budget alone ------------------------------------------------------------------------


@settings(max_examples=200, derandomize=True)
@given(
    loads=st.lists(st.tuples(st.floats(0.1, 5), st.floats(-100, 200)), min_size=1, max_size=40),
)
def test_the_budget_is_the_connection_minus_the_window_peak(
    loads: list[tuple[float, float]],
) -> None:
    """Against the definition: the highest load of the readings within the hold window
    (the latest always counts), never more than the connection minus it and the margin."""
    budget = SiteBudget(capacity=250, margin=5, hold=10, timeout=1000, fallback=60)
    now = 0.0
    seen: list[tuple[float, float]] = []
    for gap, load in loads:
        now += gap
        budget.record(now, load, None, charging=0, battery_flow=0)
        seen.append((now, load))
        window = [value for at, value in seen if at > now - 10] or [seen[-1][1]]
        assert budget.share(now) == pytest.approx(max(0.0, 250 - max(window) - 5))


@settings(max_examples=200, derandomize=True)
@given(
    readings=st.lists(
        st.tuples(
            st.floats(0.1, 30),
            st.floats(-100, 200),
            st.one_of(st.none(), st.tuples(*[st.floats(0, 400)] * 3)),
        ),
        min_size=1,
        max_size=30,
    ),
    later=st.floats(0, 100),
    limit=st.one_of(st.none(), st.floats(50, 500)),
)
def test_the_next_change_of_the_budget_is_always_ahead(
    readings: list[tuple[float, float, tuple[float, float, float] | None]],
    later: float,
    limit: float | None,
) -> None:
    """The core wakes itself at ``next_change_at``: a moment not after now would wake it
    again at once, forever (whether or not the phases' windows are read)."""
    budget = SiteBudget(
        capacity=250, margin=5, hold=10, timeout=15, fallback=60, current_limit=limit
    )
    now = 0.0
    for gap, load, currents in readings:
        now += gap
        budget.record(now, load, currents, charging=0, battery_flow=0)
        moment = budget.next_change_at(now + later)
        assert moment is None or moment > now + later
