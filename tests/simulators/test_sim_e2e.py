"""A short station day end to end: the in-process controller and simulated chargers over real
loopback WebSockets, on one virtual clock.

The day: a burst of cars at 00:30 wants far more than the grid gives, so the battery shaves the
peak until it runs empty; the cars leave by 02:30 and the night is quiet, so the battery charges
back to its initial capacity from what the grid has left. A group limit, a charger limited in
amps, a driver who has to wait for a connector and one who leaves when done are in it too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulators.records import DayRecord
from simulators.report import GRID_TOLERANCE_KW, build_report
from simulators.runner import run_day
from simulators.scenarios import Scenario, parse_scenario

GRID_KW = 100.0
BATTERY_KWH = 20.0
BATTERY_KW = 40.0
PEAK = (1800.0, 5400.0)  # 00:30 to 01:30


def short_day(**changes: Any) -> Scenario:
    def car(n: int, arrival: float, departure: float, **more: Any) -> dict[str, Any]:
        return {
            "id": f"car{n}",
            "arrival": arrival,
            "departure": departure,
            "batteryKwh": 60,
            "soc": 0.2,
            "targetSoc": 0.9,
            "maxPowerKw": 80,
            **more,
        }

    data: dict[str, Any] = {
        "name": "short",
        "durationHours": 4,
        "meterInterval": 60,
        "station": {
            "stationId": "SHORT",
            "gridCapacity": GRID_KW,
            "chargers": [
                {"id": "DC1", "maxPower": 100, "connectors": 2},
                {"id": "DC2", "maxPower": 60, "connectors": 1},
                {"id": "AC1", "maxPower": 22, "connectors": 1, "rateUnit": "A"},
            ],
            "groups": [{"id": "cable", "maxPower": 70, "chargers": ["DC2", "AC1"]}],
            "battery": {"initialCapacity": BATTERY_KWH, "power": BATTERY_KW},
        },
        "arrivals": [
            car(1, 1800, 7200, chargerId="DC1", connector=1),
            car(2, 1800, 7200, chargerId="DC1", connector=2, maxPowerKw=50),
            car(3, 1830, 6600, chargerId="DC2", connector=1),
            car(4, 1860, 6000, chargerId="AC1", connector=1, maxPowerKw=11, curve="ac"),
            # Arrives while every connector is taken: waits for the first one that frees up.
            car(5, 1900, 9000, soc=0.6, targetSoc=0.8, leaveWhenDone=True),
        ],
    }
    data.update(changes)
    return parse_scenario(json.dumps(data))


def assert_day_invariants(record: DayRecord) -> None:
    assert record.steps > 200  # every meter interval at least
    # Grid draw: what the vehicles drew minus the battery's discharge plus its charge.
    for sample in record.samples:
        assert sample.grid_kw <= GRID_KW + GRID_TOLERANCE_KW, sample
    # No vehicle drew more than its charger applied or the controller allocated, at any step.
    assert record.problems == []
    plugged = [s for s in record.sessions if s.plugged]
    assert len(plugged) == len(record.sessions) == 5
    for session in plugged:
        assert session.meter_kwh is not None and session.controller_kwh is not None
        # The controller's consumedEnergy is exactly what the meter reported (whole Wh).
        assert session.controller_kwh == session.meter_kwh, session.vehicle_id
        # ... and the meter counted what the vehicle took, to the Wh.
        assert session.meter_kwh == pytest.approx(session.delivered_kwh, abs=0.001)
        for _, kw in session.power:
            assert kw <= session.max_kw + 1e-9


@pytest.mark.parametrize("strategy", ["fair", "even-split"])
async def test_a_short_day_stays_within_the_grid_and_the_limits(strategy: str) -> None:
    record = await run_day(short_day().with_strategy(strategy))
    assert record.strategy == strategy
    assert_day_invariants(record)
    # The limits mattered: power was short, so sessions were held below what they could take.
    assert sum(1 for s in record.sessions if s.constrained_s > 0) >= 3
    peak = max(record.samples, key=lambda s: s.grid_kw)
    assert peak.grid_kw == pytest.approx(GRID_KW, abs=GRID_TOLERANCE_KW)

    # The battery shaves the peak: it discharges while the cars want more than the grid ...
    in_peak = [s for s in record.samples if PEAK[0] <= s.at <= PEAK[1]]
    assert any(s.battery_kw > 0 for s in in_peak)
    assert any(s.load_kw > GRID_KW + 1 for s in in_peak)
    stored = [s.battery_kwh for s in record.samples if s.battery_kwh is not None]
    assert min(stored) < BATTERY_KWH / 2
    # ... and after a quiet night it is back at its initial capacity, idle.
    last = record.samples[-1]
    assert last.load_kw == 0
    assert last.battery_kwh == pytest.approx(BATTERY_KWH, abs=1e-6)
    assert last.battery_kw == 0

    report = build_report(record)
    assert report["gridCapacityExceeded"] is False
    assert report["limitBreaches"] == 0
    assert report["energyMismatches"] == 0
    assert report["battery"]["endKwh"] == BATTERY_KWH
    assert report["profilesSent"] >= 5


async def test_the_waiting_driver_takes_the_first_free_connector_and_leaves_when_done() -> None:
    record = await run_day(short_day())
    car5 = next(s for s in record.sessions if s.vehicle_id == "car5")
    first_to_leave = min(
        (s for s in record.sessions if s.vehicle_id != "car5"),
        key=lambda s: s.left_at or float("inf"),
    )
    assert car5.plugged_at == first_to_leave.left_at
    assert car5.done_at is not None and car5.left_at == car5.done_at
    assert car5.short_kwh == pytest.approx(0, abs=1e-6)


async def test_the_same_day_runs_the_same_way_twice() -> None:
    day = short_day(durationHours=2)
    first, second = await run_day(day), await run_day(day)

    def trace(record: DayRecord) -> list[tuple[float, float, float | None]]:
        # The controller also brings its battery up to date on timers of its own, so the
        # battery's energy is integrated in different slices: equal up to float rounding.
        return [
            (s.at, round(s.load_kw, 6), None if s.battery_kwh is None else round(s.battery_kwh, 9))
            for s in record.samples
        ]

    assert trace(first) == trace(second)
    assert [s.delivered_kwh for s in first.sessions] == [s.delivered_kwh for s in second.sessions]


async def test_announced_vehicles_leave_unused_power_to_the_others() -> None:
    """Told that car2 takes at most 50 kW, `fair` gives its charger's other connector the rest;
    without it, car2 is capped at its charger's maxPower like any OCPP session."""
    plain = await run_day(short_day(durationHours=1))
    told = await run_day(short_day(durationHours=1), announce_vehicles=True)
    assert_day_invariants_partial(told)

    def power_at(record: DayRecord, vehicle_id: str, at: float) -> float:
        session = next(s for s in record.sessions if s.vehicle_id == vehicle_id)
        return [kw for t, kw in session.power if t <= at][-1]

    # 00:40, four cars in: 140 kW shared. Unannounced, car2 holds a share it cannot use.
    assert power_at(plain, "car1", 2400) < power_at(told, "car1", 2400)
    assert power_at(told, "car2", 2400) <= 50


def assert_day_invariants_partial(record: DayRecord) -> None:
    for sample in record.samples:
        assert sample.grid_kw <= GRID_KW + GRID_TOLERANCE_KW, sample
    assert record.problems == []
