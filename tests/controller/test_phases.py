"""Learning a session's phases from per-phase currents (controller/core/phases.py,
docs/phases.md)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.phases import PhaseCurrents, PhaseLearner

NEW = PhaseLearner()


def learn(readings: list[PhaseCurrents], charger_phases: int = 3) -> PhaseLearner:
    state = NEW
    for currents in readings:
        state = state.observe(currents, charger_phases)
    return state


def test_a_one_phase_car_is_learned_after_two_readings() -> None:
    one_phase = (16.0, 0.2, 0.0)
    assert learn([one_phase]).used is None  # one reading is not enough
    assert learn([one_phase, one_phase]).used == (1,)
    assert learn([one_phase, one_phase]).phases_used(3) == (1,)
    assert NEW.phases_used(3) == (1, 2, 3)
    # A 2-phase car on L2 and L3.
    assert learn([(0.0, 10.0, 10.0)] * 2).used == (2, 3)


def test_the_readings_must_be_in_a_row() -> None:
    one_phase = (16.0, 0.0, 0.0)
    # Broken by a reading where the phase carries current, or where nothing is busy.
    assert learn([one_phase, (16.0, 16.0, 0.0), one_phase]).used == (1, 2)
    assert learn([one_phase, (16.0, 16.0, 16.0), one_phase]).used is None
    assert learn([one_phase, (0.0, 0.0, 0.0), one_phase]).used is None
    assert learn([one_phase, (3.9, 0.0, 0.0), one_phase]).used is None
    # A reading that does not report the phase neither breaks the row nor counts in it.
    assert learn([one_phase, (16.0, None, None), one_phase]).used == (1,)


def test_thresholds_are_strict_as_docs_say() -> None:
    # Below 1 A is idle, 1 A is not; more than 4 A is busy, 4 A is not.
    assert learn([(4.5, 0.99, 1.0)] * 2).used == (1, 3)
    assert learn([(4.0, 0.0, 0.0)] * 5).used is None


def test_a_phase_that_carries_current_again_is_used_at_once() -> None:
    one_phase = learn([(16.0, 0.0, 0.0)] * 2)
    assert one_phase.observe((16.0, 1.0, 0.0), 3).used == (1, 2)
    assert one_phase.observe((16.0, 16.0, 16.0), 3).used is None
    # A pause (nothing drawn) or a missing phase teaches nothing: what was learned stays.
    paused = one_phase.observe((0.0, 0.0, 0.0), 3).observe((None, None, None), 3)
    assert paused.used == (1,)
    # Then it is dropped again only after two readings in a row.
    back = one_phase.observe((16.0, 16.0, 0.0), 3)
    assert back.observe((16.0, 0.0, 0.0), 3).used == (1, 2)
    assert back.observe((16.0, 0.0, 0.0), 3).observe((16.0, 0.0, 0.0), 3).used == (1,)


def test_phases_beyond_the_charger_do_not_count() -> None:
    # A 1-phase charger has only phase 1; a stray L2 current is ignored.
    assert learn([(16.0, 10.0, 0.0)] * 3, charger_phases=1).used is None
    assert learn([(0.0, 10.0, 0.0)] * 3, charger_phases=1).used is None
    assert learn([(0.0, 16.0, 0.0)] * 2, charger_phases=2).used == (2,)
    # The charger's phases changed to fewer than those learned: back to all of them.
    two = learn([(0.0, 0.0, 16.0)] * 2)
    assert two.used == (3,)
    assert two.observe((0.0, 0.0, 0.0), 2).used is None
    assert two.phases_used(2) == (1, 2)
    with pytest.raises(ValueError):
        NEW.observe((1.0, 1.0, 1.0), 0)


def test_the_state_is_immutable_and_unchanged_by_a_reading_that_teaches_nothing() -> None:
    state = learn([(16.0, 0.0, 0.0)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.used = (1,)  # type: ignore[misc]
    assert state.observe((16.0, 16.0, 16.0), 3) == NEW
    assert NEW.observe((None, None, None), 3) is NEW
    assert len({state, NEW, learn([(16.0, 0.0, 0.0)])}) == 2  # hashable, equal by value


# -- random readings ---------------------------------------------------------------------------

# Currents around both thresholds, and phases not reported.
# Mostly idle, carrying or busy phases, sometimes a threshold itself or any current.
typical = st.sampled_from([None, 0.0, 0.5, 2.0, 16.0])
edges = st.sampled_from([0.99, 1.0, 4.0, 4.01]) | st.floats(min_value=0, max_value=80)
amps = st.one_of(typical, typical, typical, edges)
currents = st.tuples(amps, amps, amps)
histories = st.lists(currents, min_size=2, max_size=12)
charger_phase_counts = st.integers(min_value=1, max_value=3)


def unused_by_the_spec(readings: list[PhaseCurrents], phase: int, charger_phases: int) -> bool:
    """docs/phases.md, read another way: a phase is unused when two readings in a row (of those
    reporting it) had it below 1 A with another of the charger's phases above 4 A, and no
    later reading had it at 1 A or more."""
    reported = [r for r in readings if r[phase - 1] is not None]

    def idle_while_busy(r: PhaseCurrents) -> bool:
        amps = r[phase - 1]
        others = [r[p - 1] for p in range(1, charger_phases + 1) if p != phase]
        return amps is not None and amps < 1 and any(a is not None and a > 4 for a in others)

    for j in range(len(reported) - 1, 0, -1):
        if idle_while_busy(reported[j - 1]) and idle_while_busy(reported[j]):
            later = [r[phase - 1] for r in reported[j + 1 :]]
            return all(a is not None and a < 1 for a in later)
    return False


@settings(max_examples=200)  # pure and fast; the rows of readings that matter are rare
@given(readings=histories, charger_phases=charger_phase_counts)
def test_learned_phases_are_what_the_spec_says(
    readings: list[PhaseCurrents], charger_phases: int
) -> None:
    state = learn(readings, charger_phases)
    expected = tuple(
        p
        for p in range(1, charger_phases + 1)
        if not unused_by_the_spec(readings, p, charger_phases)
    )
    assert state.phases_used(charger_phases) == expected
    assert state.used is None or 0 < len(state.used) < charger_phases
    assert state.used is None or list(state.used) == sorted(set(state.used))
    assert all(0 <= n <= 2 for n in state.idle_readings)


@given(readings=histories, last=currents, charger_phases=charger_phase_counts)
def test_a_phase_carrying_current_is_always_counted(
    readings: list[PhaseCurrents], last: PhaseCurrents, charger_phases: int
) -> None:
    state = learn([*readings, last], charger_phases)
    for p in range(1, charger_phases + 1):
        amps = last[p - 1]
        if amps is not None and amps >= 1:
            assert p in state.phases_used(charger_phases)
    # The busiest phase of a reading is never left out: the session draws on it.
    reported = [(a, p) for p, a in enumerate(last[:charger_phases], 1) if a is not None]
    if reported and max(reported)[0] > 4:
        assert max(reported)[1] in state.phases_used(charger_phases)


ONE = (16.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("readings", "used"),
    [
        ([], (1, 2, 3)),
        ([ONE], (1, 2, 3)),
        ([ONE, (16.0, 0.2, 0.0)], (1,)),
        ([ONE, ONE, (0.0, 0.0, 0.0)], (1,)),
        ([ONE, ONE, (0.0, 0.0, 0.0), (16.0, 16.0, 16.0)], (1, 2, 3)),
        ([(0.0, 10.0, 10.0)] * 2, (2, 3)),
        ([ONE, (0.0, 0.0, 0.0), ONE], (1, 2, 3)),
        ([(4.0, 0.0, 0.0)] * 4, (1, 2, 3)),
    ],
)
def test_the_examples_of_the_docs(readings: list[PhaseCurrents], used: tuple[int, ...]) -> None:
    # docs/phases.md, "Examples, on a 3-phase charger".
    assert learn(readings).phases_used(3) == used
