"""Which of its charger's phases a session draws on, learned from per-phase currents.

A 1-phase car on a 3-phase charger draws on one phase only; counting it on three would book
three times its current on the site's phases and cap it below its fair share. So the session
learns its phases from the ``Current.Import`` of each phase that MeterValues report
(docs/phases.md; docs/ocpp.md, "Meter values"):

- A phase below ``IDLE_BELOW`` (1 A) while another phase of the session carries more than
  ``BUSY_ABOVE`` (4 A), for ``READINGS_TO_DROP`` (2) readings in a row, is not used.
- A phase at or above ``IDLE_BELOW`` is used, at once: a phase that carries current must be
  booked, and holding it back for a second reading could overload the site's phase.
- A reading in which no phase carries more than ``BUSY_ABOVE`` (a paused, finished or
  tapering car) says nothing of which phases the car can use: what was learned stays, and a
  row of idle readings is broken. A phase the reading does not report is not judged.

Immutable and small, so the session can hold it and a reading replaces it. Charger phases are
numbered 1 to 3 (L1-L3 as the charger reports them); the site phases they map to through the
charger's wiring are the caller's concern. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Amps on the charger's phases 1, 2, 3; None for a phase the reading does not report.
PhaseCurrents = tuple[float | None, float | None, float | None]

IDLE_BELOW: Final = 1.0  # A
BUSY_ABOVE: Final = 4.0  # A
READINGS_TO_DROP: Final = 2


@dataclass(frozen=True, slots=True)
class PhaseLearner:
    """What a session's readings have taught about its phases.

    ``used``: the charger phases (1-based, ascending) the session is known to draw on, never
    empty; None while none has been learned unused, which means all the charger's phases.
    ``idle_readings``: per charger phase, how many of the last readings in a row had it idle
    while another phase was busy (at most ``READINGS_TO_DROP``).
    """

    used: tuple[int, ...] | None = None
    idle_readings: tuple[int, int, int] = (0, 0, 0)

    def observe(self, currents: PhaseCurrents, charger_phases: int) -> PhaseLearner:
        """The state after one reading of the session's phase currents (A) on a charger of
        ``charger_phases`` phases (1-3; a current reported on a phase beyond them is ignored)."""
        if not 1 <= charger_phases <= 3:
            raise ValueError(f"a charger has 1 to 3 phases, not {charger_phases}")
        phases = range(1, charger_phases + 1)
        busy = any(a is not None and a > BUSY_ABOVE for a in currents[:charger_phases])
        was_used = self.used
        idle = list(self.idle_readings)
        used: list[int] = []
        for p in phases:
            amps = currents[p - 1]
            if amps is not None:
                if amps >= IDLE_BELOW:
                    idle[p - 1] = 0
                elif busy:  # idle while another phase is busy
                    idle[p - 1] = min(idle[p - 1] + 1, READINGS_TO_DROP)
                else:  # nothing to learn from this reading: the row is broken
                    idle[p - 1] = 0
            carries = amps is not None and amps >= IDLE_BELOW
            was = was_used is None or p in was_used
            if carries or (was and idle[p - 1] < READINGS_TO_DROP):
                used.append(p)
        # Every phase (or none: only after the charger's phases were changed to fewer than
        # those learned) is the same as knowing nothing against any.
        learned = None if len(used) in (0, charger_phases) else tuple(used)
        state = (idle[0], idle[1], idle[2])
        if learned == was_used and state == self.idle_readings:
            return self
        return PhaseLearner(learned, state)

    def phases_used(self, charger_phases: int) -> tuple[int, ...]:
        """The charger phases to count the session on: those learned, else all of them."""
        learned = () if self.used is None else tuple(p for p in self.used if p <= charger_phases)
        return learned or tuple(range(1, charger_phases + 1))
