"""Battery behaviour (docs/allocation.md, "The battery") on explicit timestamps: no real
clock anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.battery import Battery, BatteryMode

HOUR = 3600.0
T0 = 1_000_000.0


def event_at(b: Battery) -> float:
    """The battery's next event, which the test expects to exist."""
    moment = b.next_event_at()
    assert moment is not None
    return moment


def battery(stored: float | None = None, *, capacity: float = 200, power: float = 100) -> Battery:
    return Battery(
        initial_capacity=capacity, power=power, grid_capacity=400, now=T0, stored_energy=stored
    )


def test_starts_full_and_idle() -> None:
    b = battery()
    assert b.stored_energy == 200
    assert b.available_power == 100
    assert b.flow().mode is BatteryMode.IDLE
    assert b.next_event_at() is None


def test_discharges_the_load_above_the_grid() -> None:
    b = battery()
    b.set_load(450, T0)
    assert b.flow().power == 50
    assert b.grid_power() == 400
    b.advance(T0 + HOUR)
    assert b.stored_energy == pytest.approx(150)


def test_discharge_is_capped_at_its_power() -> None:
    b = battery()
    b.set_load(600, T0)
    assert b.flow().power == 100
    assert b.grid_power() == 500  # the overdraw shows; the allocator never asks for it


def test_depletion_moment_is_predicted_exactly() -> None:
    b = battery()
    b.set_load(500, T0)
    empty_at = event_at(b)
    assert empty_at == pytest.approx(T0 + 2 * HOUR)
    assert b.advance(empty_at - 1) is False
    assert b.may_discharge
    assert b.advance(empty_at) is True
    assert b.stored_energy == 0
    assert b.available_power == 0
    assert b.flow().power == 0


def test_late_wakeup_never_goes_below_zero() -> None:
    b = battery()
    b.set_load(500, T0)
    b.advance(T0 + 10 * HOUR)
    assert b.stored_energy == 0


def test_recharges_from_unused_grid_to_exactly_initial_capacity() -> None:
    b = battery(50)
    b.set_load(330, T0)
    assert b.flow().power == -70
    assert b.grid_power() == 400
    full_at = event_at(b)
    assert full_at == pytest.approx(T0 + 150 / 70 * HOUR)
    b.advance(full_at)
    assert b.stored_energy == 200
    assert b.flow().mode is BatteryMode.IDLE
    b.advance(full_at + 5 * HOUR)
    assert b.stored_energy == 200


def test_charging_is_capped_at_its_power() -> None:
    b = battery(0)
    b.set_load(0, T0)
    assert b.flow().power == -100
    assert b.grid_power() == 100


def test_no_flapping_after_emptying_until_five_percent() -> None:
    b = battery()
    b.set_load(500, T0)
    empty_at = event_at(b)
    b.advance(empty_at)
    # The allocation drops to the grid alone; the sessions now leave 20 kW unused.
    b.set_load(380, empty_at)
    assert b.flow().power == -20
    rearm_at = event_at(b)
    assert rearm_at == pytest.approx(empty_at + 10 / 20 * HOUR)  # 5 % of 200 kWh at 20 kW
    assert b.advance(rearm_at - 60) is False
    assert b.available_power == 0
    assert b.advance(rearm_at) is True
    assert b.available_power == 100
    assert b.stored_energy == pytest.approx(10)


def test_zero_capacity_battery_never_discharges() -> None:
    b = battery(capacity=0)
    b.set_load(500, T0)
    assert b.available_power == 0
    assert b.flow().power == 0
    assert b.next_event_at() is None


def test_time_never_runs_backwards() -> None:
    b = battery()
    b.set_load(500, T0)
    b.advance(T0 + HOUR)
    b.advance(T0)  # an earlier timestamp integrates nothing
    assert b.stored_energy == pytest.approx(100)


@given(
    loads=st.lists(st.tuples(st.floats(0, 700), st.floats(0, 5 * HOUR)), min_size=1, max_size=30)
)
def test_energy_stays_within_bounds_and_grid_draw_within_capacity_while_charging(
    loads: list[tuple[float, float]],
) -> None:
    b = battery(120)
    now = T0
    for load, dt in loads:
        b.set_load(load, now)
        if b.flow().mode is BatteryMode.CHARGING:
            assert b.grid_power() <= 400 + 1e-9
        now += dt
        b.advance(now)
        assert 0 <= b.stored_energy <= 200


def test_reserve_stops_the_allocation_early_but_still_covers_the_load() -> None:
    b = Battery(initial_capacity=200, power=100, grid_capacity=400, now=T0, reserve=1.0)
    b.set_load(500, T0)
    counted_until = event_at(b)
    assert counted_until == pytest.approx(T0 + 199 / 100 * HOUR)
    assert b.advance(counted_until) is True
    assert b.available_power == 0
    assert b.stored_energy == pytest.approx(1.0)
    # The chargers have not yet accepted their lowered limits: the battery covers them.
    assert b.flow().power == 100
    assert b.grid_power() == 400
    empty_at = event_at(b)
    assert empty_at == pytest.approx(counted_until + 1 / 100 * HOUR)
    b.set_load(400, counted_until + 5)  # the lowerings were accepted 5 s later
    assert b.flow().power == 0
    assert b.stored_energy == pytest.approx(1.0 - 100 * 5 / HOUR)


def test_rearming_stays_well_above_the_reserve() -> None:
    b = Battery(initial_capacity=10, power=100, grid_capacity=400, now=T0, reserve=0.4)
    assert b.rearm_energy == pytest.approx(0.8)  # 5 % of 10 kWh would be only 0.5


@pytest.mark.parametrize(
    ("stored", "load"),
    [
        (200 - 2.4e-9, 300.0),  # charging at 100 kW, a hair from full (seen in a simulated day)
        (10 - 2.9e-9, 300.0),  # charging, a hair below the re-arm level (5 % of 200)
        (2.4e-9, 500.0),  # discharging at 100 kW, a hair above empty
    ],
)
def test_a_threshold_closer_than_the_clock_can_tell_is_reached_at_the_next_wake_up(
    stored: float, load: float
) -> None:
    """At epoch times (1.77e9 s) the clock steps by 2.4e-7 s: a wake-up predicted closer than
    that would fall on "now", find no time passed, and be predicted again forever."""
    now = 1_770_000_000.0
    b = Battery(
        initial_capacity=200,
        power=100,
        grid_capacity=400,
        now=now,
        stored_energy=stored,
        may_discharge=stored > 100 or stored < 1,
    )
    b.set_load(load, now)
    for _ in range(3):
        moment = event_at(b)
        assert moment > b.updated_at
        b.advance(moment)
        if b.next_event_at() is None or b.next_event_at() != moment:
            break
    else:
        raise AssertionError("the same wake-up again and again")
