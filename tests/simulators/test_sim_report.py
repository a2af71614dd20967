"""The report's arithmetic on hand-made days: Jain's index, drivers short, peaks, the table."""

from __future__ import annotations

from typing import Any

import pytest

from simulators.records import DayRecord, Sample, SessionRecord
from simulators.report import (
    GRID_TOLERANCE_KW,
    battery_series,
    build_report,
    drivers_short,
    format_table,
    jain_index,
)


def session(vehicle_id: str, **fields: Any) -> SessionRecord:
    values: dict[str, Any] = {
        "arrival": 0.0,
        "departure": 3600.0,
        "max_kw": 100.0,
        "requested_kwh": 30.0,
        "achievable_kwh": 30.0,
        "charger_id": "CP1",
        "connector_id": 1,
        "plugged_at": 0.0,
        "left_at": 3600.0,
        "delivered_kwh": 30.0,
        "meter_kwh": 30.0,
        "controller_kwh": 30.0,
    }
    values.update(fields)
    return SessionRecord(vehicle_id=vehicle_id, **values)


def sample(
    at: float, grid: float, battery: float | None = 50.0, load: float | None = None
) -> Sample:
    return Sample(
        at=at,
        load_kw=grid if load is None else load,
        grid_kw=grid,
        battery_kwh=battery,
        battery_kw=0.0,
        allocated_kw=None,
    )


def day(sessions: list[SessionRecord], samples: list[Sample], **fields: Any) -> DayRecord:
    values: dict[str, Any] = {
        "scenario": "t",
        "strategy": "fair",
        "mode": "virtual",
        "duration_s": 3600.0,
        "grid_capacity_kw": 100.0,
        "battery_capacity_kwh": 50.0,
        "samples": samples,
        "sessions": sessions,
    }
    values.update(fields)
    return DayRecord(**values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5.0], 1.0),
        ([10.0, 10.0, 10.0, 10.0], 1.0),
        ([1.0, 0.0], 0.5),
        ([1.0, 0.0, 0.0, 0.0], 0.25),  # one of n gets everything: 1/n
        ([1.0, 2.0, 3.0], 36 / 42),
        ([2.0, 4.0, 6.0], 36 / 42),  # scale does not matter
        ([0.0, 0.0], 1.0),
    ],
)
def test_jain_index(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)


def test_jain_index_of_nothing_is_none_and_negative_values_are_refused() -> None:
    assert jain_index([]) is None
    with pytest.raises(ValueError, match="non-negative"):
        jain_index([1.0, -1.0])


def test_drivers_short_says_by_how_much_and_how_much_the_station_caused() -> None:
    sessions = [
        session("full"),
        session("hair", delivered_kwh=29.99),  # within the tolerance: not short
        # Its own curve would only have given 36 of the 40 it wanted in its stay: the
        # station is answerable for 36 - 25 = 11 of the 15 it lacks.
        session("slow", requested_kwh=40.0, achievable_kwh=36.0, delivered_kwh=25.0),
        session(
            "turned-away",
            requested_kwh=20.0,
            delivered_kwh=0.0,
            plugged_at=None,
            left_at=None,
            charger_id=None,
            connector_id=None,
        ),
    ]
    short = drivers_short(sessions)
    assert [d["vehicleId"] for d in short] == ["turned-away", "slow"]  # most short first
    assert short[0] == {
        "vehicleId": "turned-away",
        "chargerId": None,
        "connectorId": None,
        "plugged": False,
        "requestedKwh": 20.0,
        "deliveredKwh": 0.0,
        "shortKwh": 20.0,
        "stationShortKwh": 20.0,
    }
    assert short[1]["shortKwh"] == 15.0
    assert short[1]["stationShortKwh"] == 11.0


def test_report_jain_counts_only_constrained_sessions_at_their_average_charging_power() -> None:
    sessions = [
        # Held back; 30 kWh in 1 h and 30 kWh in 0.5 h (done at 1800 s): 30 and 60 kW.
        session("a", constrained_s=600.0),
        session("b", constrained_s=60.0, done_at=1800.0),
        # Never held back: however slow, it is not in the index.
        session("c", delivered_kwh=1.0, meter_kwh=1.0, controller_kwh=1.0),
    ]
    report = build_report(day(sessions, [sample(0, 10)]))
    assert report["constrainedSessions"] == 2
    assert report["jainFairness"] == pytest.approx(round((30 + 60) ** 2 / (2 * (900 + 3600)), 4))


def test_report_without_constrained_sessions_has_no_fairness_figure() -> None:
    report = build_report(day([session("a")], [sample(0, 10)]))
    assert report["jainFairness"] is None
    assert "Jain fairness (constrained)" in format_table([report])


def test_report_peak_grid_draw_energy_and_battery() -> None:
    samples = [
        sample(0, 20, 50.0),
        sample(900, 100 + GRID_TOLERANCE_KW / 4, 30.0, load=140),  # meter resolution
        sample(1800, 60, 10.0),
        sample(3600, 0, 50.0),
    ]
    sessions = [
        session("a", delivered_kwh=20.0, meter_kwh=20.0, controller_kwh=20.0),
        session("b", requested_kwh=10.0, delivered_kwh=5.0, meter_kwh=5.0, controller_kwh=4.0),
    ]
    report = build_report(day(sessions, samples, profiles_sent=7, steps=4))
    assert report["peakGridPowerKw"] == 100.0
    assert report["peakGridAtHours"] == 0.25
    assert report["gridCapacityExceeded"] is False
    assert report["peakLoadKw"] == 140.0
    assert report["energyRequestedKwh"] == 40.0
    assert report["energyDeliveredKwh"] == 25.0
    assert report["driversShort"] == 2
    assert report["energyMismatches"] == 1  # b: the controller recorded 4, the meter 5
    assert report["profilesSent"] == 7
    assert report["battery"] == {
        "initialCapacityKwh": 50.0,
        "minKwh": 10.0,
        "maxKwh": 50.0,
        "endKwh": 50.0,
        "series": [[0.0, 50.0], [0.25, 30.0], [0.5, 10.0], [0.75, 10.0], [1.0, 50.0]],
    }
    over = build_report(day(sessions, [sample(0, 100.01)]))
    assert over["gridCapacityExceeded"] is True


def test_battery_series_without_a_battery_is_empty_and_the_report_says_none() -> None:
    samples = [sample(0, 10, None), sample(3600, 10, None)]
    assert battery_series(samples, 3600) == []
    assert build_report(day([], samples, battery_capacity_kwh=None))["battery"] is None


def test_table_puts_strategies_side_by_side() -> None:
    fair = build_report(day([session("a")], [sample(0, 10)]))
    even = build_report(day([session("a")], [sample(0, 10)], strategy="even-split"))
    lines = format_table([fair, even]).splitlines()
    assert lines[0].split()[-2:] == ["fair", "even-split"]
    peak = next(line for line in lines if line.startswith("peak grid draw"))
    assert peak.split()[-2:] == ["10.0", "10.0"]
    assert format_table([]) == ""
