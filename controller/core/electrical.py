"""The electrical model in the station core (docs/electrical.md): units of limits, phases,
and the allocator's demands. Pure.

With the model on, a session on an AC charger is sent (and booked in) a current per phase,
a whole number of the charger's steps; every other session stays in whole kW.
"""

from __future__ import annotations

import math

from allocator.electrical_types import ElectricalDemand
from controller.config import ACElectrical, ChargerConfig
from controller.core.sessions import Session
from controller.core.state import LimitUnit

# Float sums of 0.1 A steps are not exact; a microampere is physically nothing.
_NOISE = 1e-9


def limit_unit(charger: ChargerConfig, electrical: bool) -> LimitUnit:
    return LimitUnit.AMPS if electrical and charger.ac is not None else LimitUnit.KW


def phases_used(ac: ACElectrical, session: Session | None) -> int:
    """How many of the charger's phases the session draws on: stated, learned, else all."""
    if session is not None:
        stated = session.phases_in_use
        if isinstance(stated, int):
            return min(stated, ac.phases)
        if stated is not None:
            return len(stated)
    return ac.phases


def kw_of_current(ac: ACElectrical, amps: float, phases: int) -> float:
    """The kW booked for ``amps`` per phase on ``phases`` phases."""
    return amps * ac.voltage * phases / 1000.0


def current_for_kw(ac: ACElectrical, kw: float, phases: int) -> float:
    """The current per phase that covers ``kw``, rounded up to a whole step: a hold or a
    pin counted in amps must never count less than what it stood for in kW."""
    steps = math.ceil(kw * 1000.0 / (ac.voltage * phases) / ac.current_step - _NOISE)
    return max(0, steps) * ac.current_step


def convert(value: float, unit: LimitUnit, to: LimitUnit, ac: ACElectrical | None) -> float:
    """A hold read in ``unit`` for a charger that is now counted in ``to`` (its
    configuration changed across a restart), rounded up so it never counts less."""
    if unit is to or ac is None:
        return value
    if to is LimitUnit.AMPS:
        return current_for_kw(ac, value, ac.phases)
    return float(math.ceil(kw_of_current(ac, value, ac.phases) - _NOISE))


def idle(session: Session, ac: ACElectrical | None) -> bool:
    """A car on an AC charger that draws so little that what it was learned to take is below
    its minimum current: finished, or resting. Kept at its minimum it would hold 6 A on each
    of its phases that a waiting car could charge with (docs/electrical.md, "Idle cars")."""
    learned = session.learned_max_power
    if ac is None or learned is None:
        return False
    return learned < kw_of_current(ac, ac.min_current, phases_used(ac, session))


def electrical_demand_of(session: Session, ac: ACElectrical | None) -> ElectricalDemand:
    """``ac``: the session's charger, if AC (a car with more phases than its charger draws
    on the charger's). An idle car is paused (pinned at 0 A) until the next rotation
    boundary offers it its minimum again."""
    phases = session.phases_in_use
    if ac is None:
        phases = None
    elif isinstance(phases, int):
        phases = min(phases, ac.phases)
    return ElectricalDemand(
        session_id=session.session_id,
        charger_id=session.charger_id,
        started_at=session.started_at,
        vehicle_max_power=session.cap,
        phases=phases,
        fixed=0.0 if idle(session, ac) else None,
    )
