"""Learning what an OCPP vehicle takes from what it draws (controller.core.demand)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import config_from_dict
from controller.core.demand import RAMP_UP_SECONDS, learned_cap
from controller.core.events import MeterReading
from tests.controller.conftest import ac_station, example_config
from tests.controller.core_harness import CoreHarness

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


def two_sessions_on_cp001(**config: object) -> tuple[CoreHarness, int, int]:
    """CP001 connected and set up, two transactions whose limits it accepted."""
    h = CoreHarness(example_config(battery=None, **config), now=0.0)
    h.connect("CP001")
    a_tx = h.start_transaction("CP001", 1)
    h.answer_profiles()
    h.now = 1.0
    b_tx = h.start_transaction("CP001", 2)
    h.answer_profiles()
    return h, a_tx, b_tx


def test_power_a_vehicle_does_not_use_goes_to_the_others() -> None:
    h, a_tx, b_tx = two_sessions_on_cp001()
    a, b = h.session_of(a_tx), h.session_of(b_tx)
    assert (a.allocated_power, b.allocated_power) == (100, 100)
    # a's car takes only 11 kW (an AC on-board charger).
    h.now = LATER
    h.meter("CP001", a_tx, kw=11.0)
    assert a.learned_max_power == 15
    assert h.tx_limits("CP001") == [(1, 15_000)]  # lowered first...
    h.answer_profiles()  # ...and once its charger accepted, b may have the rest
    assert (a.allocated_power, b.allocated_power) == (15, 185)
    assert a.limited_by == "vehicle"
    # If it draws what it is now allowed, it may take more again.
    h.now = LATER + 60
    h.meter("CP001", a_tx, kw=14.5)
    assert a.learned_max_power is None
    assert h.tx_limits("CP001") == [(2, 100_000)]  # b comes down before a goes up
    h.answer_profiles()
    assert (a.allocated_power, b.allocated_power) == (100, 100)


def test_nothing_is_learned_under_a_limit_the_charger_has_not_accepted() -> None:
    h = CoreHarness(example_config(battery=None), now=0.0)
    h.connect("CP001")
    a_tx = h.start_transaction("CP001", 1)  # its TxProfile is still on the wire
    h.now = LATER
    h.meter("CP001", a_tx, kw=11.0)
    assert h.session_of(a_tx).learned_max_power is None


def test_learning_can_be_switched_off() -> None:
    h, a_tx, _ = two_sessions_on_cp001(allocation={"learnDemand": False})
    h.now = LATER
    h.meter("CP001", a_tx, kw=11.0)
    assert h.session_of(a_tx).learned_max_power is None


def test_a_declared_maximum_is_capped_by_what_the_vehicle_draws() -> None:
    """A bus that said 150 kW but is nearly full draws 49 kW: it is capped near its draw
    and the rest goes to the other session, as for a vehicle that said nothing."""
    h, a_tx, b_tx = two_sessions_on_cp001()
    a, b = h.session_of(a_tx), h.session_of(b_tx)
    h.update_rest(a.session_id, vehicle_max_power=150)
    h.answer_profiles()
    h.now = LATER
    h.meter("CP001", a_tx, kw=49.0)
    h.answer_profiles()
    assert a.vehicle_max_power == 150 and a.learned_max_power == 56
    assert (a.allocated_power, b.allocated_power) == (56, 144)
    # Drawing what it is allowed lifts the cap; the declared maximum still holds.
    h.now = LATER + 60
    h.meter("CP001", a_tx, kw=55.5)
    h.answer_profiles()
    assert a.learned_max_power is None and a.cap == 150


def test_a_one_phase_car_using_its_whole_current_is_not_capped() -> None:
    """With the electrical model a 1-phase car on a 3-phase charger draws a third of what
    its limit would give on three phases; once its phases are learned that is its whole
    limit, so it keeps its fair share."""
    h = CoreHarness(config_from_dict(ac_station(1, 32)), now=0.0)
    h.connect("AC0")
    tx = h.start_transaction("AC0", 1)
    h.answer_profiles()
    session = h.session_of(tx)
    assert session.allocated_current == 31.8  # the charger's 22 kW on three phases
    for second in (1.0, 2.0):
        h.now = second
        h.handle(MeterReading(h.now, "AC0", 1, tx, phase_currents=(31.8, 0.0, 0.0)))
    assert session.phases_in_use == (1,)
    h.answer_profiles()
    assert session.allocated_current == 31.8 and session.allocated_power == pytest.approx(7.314)
    h.now = LATER
    h.handle(MeterReading(h.now, "AC0", 1, tx, power_kw=7.3, phase_currents=(31.7, 0.0, 0.0)))
    assert session.learned_max_power is None


def test_a_car_that_takes_nothing_gives_its_minimum_to_one_that_waits() -> None:
    """docs/electrical.md, "Idle cars": 10 A per phase fit one car at its 6 A minimum. When
    the running car is full and draws nothing, it is paused and the waiting car runs; at the
    next rotation boundary it is offered its minimum again, last (it has the most energy)."""
    config = ac_station(2, 10, allocation={"rotationPeriod": 900})
    h = CoreHarness(config_from_dict(config), now=0.0)
    h.connect("AC0")
    h.connect("AC1")
    full_tx = h.start_transaction("AC0", 1)
    waiting_tx = h.start_transaction("AC1", 1)
    h.answer_profiles()
    full, waiting = h.session_of(full_tx), h.session_of(waiting_tx)
    assert (full.allocated_current, waiting.paused_since) == (10.0, 0.0)
    h.advance(LATER)
    h.handle(MeterReading(h.now, "AC0", 1, full_tx, power_kw=0.0, energy_register_kwh=30.0))
    h.answer_profiles()
    assert full.paused_since == h.now and waiting.paused_since is None
    assert waiting.allocated_current == 10.0
    # The boundary: the full car is offered its minimum again, but it has the most energy
    # and the other one fits alone.
    h.advance(900)
    h.answer_profiles()
    assert waiting.allocated_current == 10.0 and full.paused_since is not None
    assert full.learned_max_power is None  # learns anew if it ever runs again
