"""Rotation of paused sessions (docs/electrical-allocation.md, "Rotation").

When not every session can run at its minimum, :func:`allocator.electrical.
allocate_electrical` runs the largest set it can in a given order. This module
chooses that order, as a pure state machine: the caller passes the clock's
``now`` and what it knows of each session, and gets the order and the next
time it must decide again (the next rotation boundary).

* At a boundary (every ``period`` seconds): first the sessions paused for at
  least ``max_pause``, longest paused first; then all others by least energy
  received in this session (ties: earliest start, then id).
* Between boundaries: the running sessions first (least energy first, so that
  if they no longer all fit the ones with most energy are paused), then the
  waiting ones in the boundary order. So a running session is paused only if
  it no longer fits, a waiting one resumes as soon as it fits, and a new
  session that does not fit waits for the next boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_PERIOD = 900.0


@dataclass(frozen=True, slots=True)
class RotationSession:
    """What the rotation needs to know of a session.

    ``running``: whether the previous allocation let it run. ``paused_since``:
    since when it has been waiting (its arrival for a new session that has not
    run yet), ``None`` while it runs. ``energy``: kWh received in this session.
    """

    session_id: str
    started_at: float
    energy: float
    running: bool
    paused_since: float | None


@dataclass(frozen=True, slots=True)
class RotationDecision:
    """The order for :func:`allocate_electrical`, and when to decide again."""

    order: tuple[str, ...]
    at_boundary: bool
    last_boundary: float
    next_boundary: float


def rotation_order(
    now: float,
    sessions: Iterable[RotationSession],
    last_boundary: float | None,
    period: float = DEFAULT_PERIOD,
    max_pause: float | None = None,
) -> RotationDecision:
    """The rotation order at ``now``.

    ``last_boundary`` is the ``last_boundary`` of the previous decision
    (``None`` the first time: ``now`` is then a boundary). Boundaries fall on
    ``last_boundary + k x period``, so they do not drift with late calls.
    ``max_pause`` defaults to twice the period.
    """
    if not (math.isfinite(period) and period > 0):
        raise ValueError("rotation period must be a positive number of seconds")
    pause_limit = 2 * period if max_pause is None else max_pause
    if not (math.isfinite(pause_limit) and pause_limit >= 0):
        raise ValueError("maxPause must be a number of seconds >= 0")
    if last_boundary is None:
        boundary, at_boundary = now, True
    elif now >= last_boundary + period:
        boundary = last_boundary + math.floor((now - last_boundary) / period) * period
        at_boundary = True
    else:
        boundary, at_boundary = last_boundary, False

    listed = list(sessions)

    def least_energy(s: RotationSession) -> tuple[float, float, str]:
        return (s.energy, s.started_at, s.session_id)

    def waiting_key(s: RotationSession) -> tuple[int, float, float, float, str]:
        since = now if s.paused_since is None else s.paused_since
        overdue = s.paused_since is not None and now - since >= pause_limit
        # Overdue first, longest paused first; then least energy.
        return (0, since, *least_energy(s)) if overdue else (1, 0.0, *least_energy(s))

    if at_boundary:
        ordered = sorted(listed, key=waiting_key)
    else:
        running = sorted((s for s in listed if s.running), key=least_energy)
        waiting = sorted((s for s in listed if not s.running), key=waiting_key)
        ordered = running + waiting
    return RotationDecision(
        order=tuple(s.session_id for s in ordered),
        at_boundary=at_boundary,
        last_boundary=boundary,
        next_boundary=boundary + period,
    )


def paused_since_after(
    now: float, sessions: Sequence[RotationSession], running: Mapping[str, bool]
) -> dict[str, float | None]:
    """Each session's ``paused_since`` once an allocation decided ``running``.

    A running session has none; one that has just stopped running is paused
    from ``now``; one still waiting keeps its time (a new session's arrival).
    """
    out: dict[str, float | None] = {}
    for s in sessions:
        if running[s.session_id]:
            out[s.session_id] = None
        elif s.running or s.paused_since is None:
            out[s.session_id] = now
        else:
            out[s.session_id] = s.paused_since
    return out
