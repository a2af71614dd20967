"""Vehicles: tapering curves, never above the limit, every kWh counted once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.vehicles import ChargingCurve, CurveKind, Vehicle


def car(soc: float = 0.2, **kwargs: object) -> Vehicle:
    defaults: dict[str, object] = {
        "vehicle_id": "V1",
        "arrival": 0.0,
        "departure": 3600.0,
        "battery_kwh": 80.0,
        "soc": soc,
        "curve": ChargingCurve.of(CurveKind.DC, 150.0),
    }
    defaults.update(kwargs)
    return Vehicle(**defaults)  # type: ignore[arg-type]


def test_dc_curve_is_flat_to_80_percent_then_tapers_to_a_tenth() -> None:
    curve = ChargingCurve.of(CurveKind.DC, 100.0)
    assert curve.power_kw(0.0) == curve.power_kw(0.8) == 100.0
    assert curve.power_kw(0.9) == pytest.approx(55.0)
    assert curve.power_kw(1.0) == pytest.approx(10.0)


def test_ac_curve_is_flat_almost_to_the_top() -> None:
    curve = ChargingCurve.of(CurveKind.AC, 11.0)
    assert curve.power_kw(0.95) == 11.0
    assert curve.power_kw(1.0) == pytest.approx(3.3)


@given(st.floats(0, 1), st.floats(0, 1))
def test_curve_never_rises_as_the_battery_fills(a: float, b: float) -> None:
    curve = ChargingCurve.of(CurveKind.DC, 350.0)
    low, high = sorted((a, b))
    assert curve.power_kw(high) <= curve.power_kw(low)


@given(st.floats(0, 1), st.floats(0, 500))
def test_power_is_never_above_the_limit_nor_the_curve(soc: float, limit: float) -> None:
    vehicle = car()
    drawn = vehicle.power_at(soc, limit)
    assert 0 <= drawn <= limit
    assert drawn <= vehicle.curve.power_kw(soc)


@given(
    st.floats(0, 0.99),
    st.lists(st.tuples(st.floats(0, 900), st.floats(0, 400)), max_size=30),
)
def test_energy_is_conserved(soc: float, steps: list[tuple[float, float]]) -> None:
    vehicle = car(soc=soc)
    taken = sum(vehicle.charge(dt, limit) for dt, limit in steps)
    assert taken == pytest.approx(vehicle.delivered_kwh)
    assert vehicle.delivered_kwh == pytest.approx((vehicle.soc - soc) * vehicle.battery_kwh)
    assert vehicle.delivered_kwh <= vehicle.requested_kwh + 1e-9
    assert sum(dt * limit for dt, limit in steps) / 3600 >= taken - 1e-9


def test_taper_slows_the_last_twenty_percent() -> None:
    vehicle = car(soc=0.0, battery_kwh=100.0)
    minutes = 0
    while vehicle.soc < 0.8:
        vehicle.charge(60, 1000)
        minutes += 1
    to_80 = minutes
    while not vehicle.done:
        vehicle.charge(60, 1000)
        minutes += 1
    assert to_80 in (32, 33)  # 80 kWh at 150 kW, give or take float rounding
    assert minutes - to_80 > 2 * (20 / 150 * 60)  # the taper at least doubles the time


def test_target_energy_stops_the_vehicle() -> None:
    vehicle = car(soc=0.2, target_energy_kwh=10.0)
    assert vehicle.requested_kwh == 10.0
    assert vehicle.charge(3600, 150) == pytest.approx(10.0)
    assert vehicle.done and vehicle.demand_kw() == 0.0
    assert vehicle.soc == pytest.approx(0.325)


def test_target_soc_is_the_goal_when_it_comes_first() -> None:
    vehicle = car(soc=0.5, target_soc=0.6, target_energy_kwh=50.0)
    assert vehicle.requested_kwh == pytest.approx(8.0)


def test_a_done_vehicle_stays_unless_told_to_leave() -> None:
    stays = car(soc=1.0)
    leaves = car(soc=1.0, leave_when_done=True)
    assert stays.done and not stays.wants_to_leave(10)
    assert stays.wants_to_leave(3600)
    assert leaves.wants_to_leave(10)


def test_bad_vehicles_are_refused() -> None:
    with pytest.raises(ValueError):
        car(soc=1.5)
    with pytest.raises(ValueError):
        car(departure=-1.0)
    with pytest.raises(ValueError):
        ChargingCurve(0.0)
    with pytest.raises(ValueError):
        car().advance(-1, 10)
