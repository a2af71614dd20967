"""Learning what an OCPP vehicle takes from what it draws (controller.demand)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.demand import RAMP_UP_SECONDS, learned_cap
from controller.sessions import Origin
from controller.station import Station
from tests.controller.conftest import example_config

LATER = RAMP_UP_SECONDS + 1


@pytest.mark.parametrize(
    ("cap", "consumed", "limit", "seconds", "expected"),
    [
        (None, 20.0, 100, 30.0, None),  # still ramping up: nothing learned
        (None, 20.0, 100, LATER, 24.0),  # far below its limit: capped a little above
        (None, 85.0, 100, LATER, None),  # uses its limit
        (24.0, 23.5, 100, LATER, None),  # reaches the cap: it may want more
        (24.0, 18.0, 100, LATER, 22.0),  # tapering: a lower cap
        (24.0, 20.0, 100, LATER, 24.0),  # not worth a reallocation
        (None, 0.0, 100, LATER, 2.0),  # paused (SuspendedEV): keeps a small floor
    ],
)
def test_learned_cap(
    cap: float | None, consumed: float, limit: int, seconds: float, expected: float | None
) -> None:
    assert learned_cap(cap, consumed, limit, seconds) == expected


@given(
    cap=st.one_of(st.none(), st.floats(1, 400)),
    consumed=st.floats(0, 400),
    limit=st.integers(0, 400),
    seconds=st.floats(0, 10_000),
)
def test_a_learned_cap_always_leaves_room_above_the_draw(
    cap: float | None, consumed: float, limit: int, seconds: float
) -> None:
    new = learned_cap(cap, consumed, limit, seconds)
    if new is not None and new != cap:
        assert new >= consumed + 2


def test_power_a_vehicle_does_not_use_goes_to_the_others() -> None:
    station = Station(example_config(battery=None), now=0.0)
    a = station.start_session(
        charger_id="CP001", connector_id=0, vehicle_max_power=None, now=0.0, origin=Origin.OCPP
    )
    b = station.start_session(
        charger_id="CP001", connector_id=1, vehicle_max_power=None, now=1.0, origin=Origin.OCPP
    )
    assert (a.allocated_power, b.allocated_power) == (100, 100)
    # Both chargers accepted their limits; a's car takes only 11 kW (an AC on-board charger).
    station.held.update({a.session_id: 100, b.session_id: 100})
    station.update_session(a.session_id, now=LATER, consumed_power=11.0)
    assert a.learned_max_power == 15
    assert station.plan is not None
    assert station.plan.to_send(a.session_id, 100) == 15  # lowered first...
    station.held[a.session_id] = 15
    station.reallocate(LATER + 1)  # ...and once its charger accepted, b may have the rest
    assert (a.allocated_power, b.allocated_power) == (15, 185)
    assert a.limited_by == "vehicle"
    # If it draws what it is now allowed, it may take more again.
    station.held.update({a.session_id: 15, b.session_id: 185})
    station.update_session(a.session_id, now=LATER + 60, consumed_power=14.5)
    assert a.learned_max_power is None
    assert station.plan is not None
    assert station.plan.to_send(b.session_id, 185) == 100
    station.held[b.session_id] = 100
    station.reallocate(LATER + 61)
    assert (a.allocated_power, b.allocated_power) == (100, 100)


def test_nothing_is_learned_under_a_limit_the_charger_has_not_accepted() -> None:
    station = Station(example_config(battery=None), now=0.0)
    a = station.start_session(
        charger_id="CP001", connector_id=0, vehicle_max_power=None, now=0.0, origin=Origin.OCPP
    )
    station.update_session(a.session_id, now=LATER, consumed_power=11.0)
    assert a.learned_max_power is None


def test_learning_can_be_switched_off() -> None:
    station = Station(example_config(battery=None, allocation={"learnDemand": False}), now=0.0)
    a = station.start_session(
        charger_id="CP001", connector_id=0, vehicle_max_power=None, now=0.0, origin=Origin.OCPP
    )
    station.held[a.session_id] = a.allocated_power
    station.update_session(a.session_id, now=LATER, consumed_power=11.0)
    assert a.learned_max_power is None
