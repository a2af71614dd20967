"""The report's arithmetic on hand-made days: Jain's index, drivers short, peaks, the table."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.records import DayRecord, Sample, SessionRecord
from simulators.report import (
    GRID_TOLERANCE_KW,
    battery_series,
    build_report,
    drivers_short,
    format_table,
    jain_index,
    short_parts,
    speed_share,
)
from simulators.vehicles import ChargingCurve, CurveKind, Vehicle


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


def test_drivers_short_says_by_how_much_and_why() -> None:
    sessions = [
        session("full"),
        session("hair", delivered_kwh=29.99),  # within the tolerance: not short
        # Its own curve would only have given 36 of the 40 it wanted in its stay, and it
        # plugged in at once: the station is answerable for 36 - 25 = 11 of the 15 it lacks.
        session(
            "slow",
            requested_kwh=40.0,
            achievable_kwh=36.0,
            plugged_achievable_kwh=36.0,
            delivered_kwh=25.0,
        ),
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
        "cause": "noConnector",
        "noConnectorShortKwh": 20.0,
        "stationShortKwh": 0.0,
        "vehicleShortKwh": 0.0,
    }
    assert short[1]["shortKwh"] == 15.0
    assert short[1]["cause"] == "station"
    assert short[1]["stationShortKwh"] == 11.0
    assert short[1]["vehicleShortKwh"] == 4.0
    assert short[1]["noConnectorShortKwh"] == 0.0


def test_a_shortfall_splits_into_waiting_limits_and_the_vehicles_own_curve() -> None:
    # Wanted 50; its curve could give 40 from its arrival but only 28 from when a connector
    # freed up; it got 25: 12 lost waiting, 3 to the station's limits, 10 to its own curve.
    waited = session(
        "waited",
        requested_kwh=50.0,
        achievable_kwh=40.0,
        plugged_at=1800.0,
        plugged_achievable_kwh=28.0,
        delivered_kwh=25.0,
    )
    assert short_parts(waited) == pytest.approx(
        {"noConnector": 12.0, "station": 3.0, "vehicle": 10.0}
    )
    assert sum(short_parts(waited).values()) == pytest.approx(waited.short_kwh)
    [entry] = drivers_short([waited])
    assert entry["cause"] == "noConnector"


def test_the_report_counts_each_short_driver_under_the_cause_that_cost_most() -> None:
    sessions = [
        session("ok"),
        session("turned-away", delivered_kwh=0.0, plugged_at=None, left_at=None),
        session("held-back", delivered_kwh=10.0, plugged_achievable_kwh=30.0),
        # Its curve gives 12 of the 30 it wants in its stay; it got all 12.
        session("short-stay", achievable_kwh=12.0, plugged_achievable_kwh=12.0, delivered_kwh=12.0),
        session("also-short-stay", achievable_kwh=5.0, delivered_kwh=4.0),
    ]
    report = build_report(day(sessions, [sample(0, 10)]))
    assert report["driversShort"] == 4
    assert report["driversShortNoConnector"] == 1
    assert report["driversShortStation"] == 1
    assert report["driversShortVehicle"] == 2
    assert report["driversNeverPlugged"] == 1
    table = format_table([report])
    rows = {line[:32].strip(): line.split()[-1] for line in table.splitlines()[2:]}
    assert rows["found no connector"] == "1"
    assert rows["limited by the station"] == "1"
    assert rows["limited by own curve or stay"] == "2"


def test_report_jain_counts_only_constrained_sessions_at_their_share_of_their_own_speed() -> None:
    sessions = [
        # Held back; at most 100 kW. 30 kWh in 1 h, and 30 kWh in 0.5 h (done at 1800 s):
        # 0.3 and 0.6 of their own speed.
        session("a", constrained_s=600.0),
        session("b", constrained_s=60.0, done_at=1800.0),
        # Never held back: however slow, it is not in the index.
        session("c", delivered_kwh=1.0, meter_kwh=1.0, controller_kwh=1.0),
    ]
    report = build_report(day(sessions, [sample(0, 10)]))
    assert report["constrainedSessions"] == 2
    assert report["jainFairness"] == pytest.approx(round((0.3 + 0.6) ** 2 / (2 * (0.09 + 0.36)), 4))


def at_full_speed(vehicle_id: str, max_kw: float, hours: float) -> SessionRecord:
    energy = max_kw * hours
    return session(
        vehicle_id,
        max_kw=max_kw,
        requested_kwh=energy,
        achievable_kwh=energy,
        delivered_kwh=energy,
        meter_kwh=energy,
        controller_kwh=energy,
        left_at=hours * 3600,
        constrained_s=60.0,
    )


def test_vans_and_buses_each_at_their_own_maximum_are_perfectly_fair() -> None:
    # In raw kW (22 and 150) this would be (2 * 22 + 2 * 150)^2 / (4 * (2 * 22^2 + 2 * 150^2))
    # = 0.65: a van at full speed is not treated worse than a bus at full speed.
    sessions = [
        at_full_speed("van1", 22.0, 2.0),
        at_full_speed("van2", 22.0, 3.0),
        at_full_speed("bus1", 150.0, 1.0),
        at_full_speed("bus2", 150.0, 0.5),
    ]
    assert build_report(day(sessions, [sample(0, 10)]))["jainFairness"] == 1.0
    # A bus held to the vans' 22 kW is what the index must show.
    slow_bus = at_full_speed("bus3", 22.0, 1.0)
    slow_bus.max_kw = 150.0
    report = build_report(day([*sessions, slow_bus], [sample(0, 10)]))
    share = 22 / 150
    assert report["jainFairness"] == pytest.approx(
        round((4 + share) ** 2 / (5 * (4 + share**2)), 4)
    )


@given(st.lists(st.tuples(st.floats(3.7, 350.0), st.floats(0.05, 10.0)), min_size=1, max_size=20))
def test_sessions_at_their_own_full_speed_have_a_fairness_of_one(
    visits: list[tuple[float, float]],
) -> None:
    sessions = [at_full_speed(f"v{n}", kw, h) for n, (kw, h) in enumerate(visits)]
    assert build_report(day(sessions, []))["jainFairness"] == 1.0


def test_speed_share_follows_the_vehicles_own_curve() -> None:
    # A DC car from 70 % to 100 % of 60 kWh: its curve tapers, so even unlimited it needs
    # longer than 18 kWh at its 100 kW maximum would take.
    car = Vehicle("dc", 0.0, 7200.0, 60.0, 0.7, ChargingCurve.of(CurveKind.DC, 100.0))
    unlimited = car.unlimited_seconds(18.0)
    assert unlimited > 18.0 / 100.0 * 3600
    flat = Vehicle("flat", 0.0, 7200.0, 60.0, 0.1, ChargingCurve(100.0, taper_from_soc=1.0))
    assert flat.unlimited_seconds(18.0) == pytest.approx(648.0)
    # Charged at exactly its curve's speed: a share of 1; twice as long: 0.5.
    at_curve = session("dc", max_kw=100.0, delivered_kwh=18.0, unlimited_s=unlimited)
    at_curve.left_at = unlimited
    assert speed_share(at_curve) == pytest.approx(1.0)
    at_curve.left_at = 2 * unlimited
    assert speed_share(at_curve) == pytest.approx(0.5)
    assert speed_share(session("none", delivered_kwh=0.0)) is None


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
