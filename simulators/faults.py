"""Fault injection for simulated chargers: what to break, settable while the charger runs.

A test flips these knobs on a running :class:`simulators.chargepoint.ChargePoint`
(``cp.faults.reject_next_profiles = 2``) and watches how the central system copes. The frame
mangling itself (:func:`mangle`) is pure: it maps one outgoing frame to what goes on the wire.
:class:`FaultyWire` applies it to one connection as the ``outgoing`` hook of its
:class:`shell.websocket.WebSocketLink`, and withholds the answers the knobs say never leave.
The profile knobs act in :mod:`simulators.handlers`.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from protocol import Call, CallError, CallReceived, CallResult, OcppError, parse_frame

__all__ = ["Corruption", "Faults", "FaultyWire", "corrupt", "mangle"]


class Corruption(StrEnum):
    NOT_JSON = "not-json"  # the receiver must answer nothing it cannot read (OCPP-J 4.2.3)
    WRONG_TYPES = "wrong-types"  # valid frame, payload values of the wrong JSON type


@dataclass
class Faults:
    # SetChargingProfile: answer (and apply) only after this many seconds of the charger's clock,
    profile_delay: float = 0.0
    # ... or only once the test sets this event.
    profile_hold: asyncio.Event | None = None
    # Answer SetChargingProfile with Rejected: always, or for the next k profiles.
    reject_profiles: bool = False
    reject_next_profiles: int = 0
    # Actions of the central system's CALLs that are handled but whose answer never leaves.
    unanswered: set[str] = field(default_factory=set)
    # Outgoing frames (ours and our answers): lose with probability p, send twice, or garble.
    drop_probability: float = 0.0
    duplicate_next: int = 0
    duplicate_all: bool = False
    corrupt_next: int = 0
    corruption: Corruption = Corruption.NOT_JSON
    # After a reconnection, boot again (a reboot) or carry on (OCPP-J 5.4 allows both).
    boot_on_reconnect: bool = False
    # What the knobs did so far: frames lost on the wire, answers withheld.
    dropped_frames: int = 0
    silenced_answers: int = 0

    def profiles_wait(self) -> bool:
        """Whether a SetChargingProfile arriving now is answered later (delayed or held)."""
        held = self.profile_hold is not None and not self.profile_hold.is_set()
        return held or self.profile_delay > 0

    def take_profile_rejection(self) -> bool:
        if self.reject_profiles:
            return True
        if self.reject_next_profiles > 0:
            self.reject_next_profiles -= 1
            return True
        return False


class FaultyWire:
    """The fault layer of one connection: every outgoing frame passes through it."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        self._silenced: set[str] = set()  # the peer's CALLs whose answer must not leave

    def note_call(self, call: CallReceived) -> None:
        """A CALL of an ``unanswered`` action is handled as usual; its answer never leaves."""
        if call.action in self._faults.unanswered:
            self._silenced.add(call.unique_id)

    def __call__(self, frame: str) -> list[str]:
        if self._silenced and self._is_silenced(frame):
            self._faults.silenced_answers += 1
            return []
        wire = mangle(frame, self._faults, self._rng)
        if not wire:
            self._faults.dropped_frames += 1
        return wire

    def _is_silenced(self, frame: str) -> bool:
        try:
            parsed = parse_frame(frame)
        except OcppError:
            return False
        if isinstance(parsed, CallResult | CallError) and parsed.unique_id in self._silenced:
            self._silenced.discard(parsed.unique_id)
            return True
        return False


def mangle(frame: str, faults: Faults, rng: random.Random) -> list[str]:
    """What goes on the wire for ``frame``: nothing (dropped), it, it twice, or a garbled copy.
    Counters in ``faults`` are consumed."""
    if faults.drop_probability > 0 and rng.random() < faults.drop_probability:
        return []
    if faults.corrupt_next > 0:
        faults.corrupt_next -= 1
        frame = corrupt(frame, faults.corruption)
    if faults.duplicate_all:
        return [frame, frame]
    if faults.duplicate_next > 0:
        faults.duplicate_next -= 1
        return [frame, frame]
    return [frame]


def corrupt(frame: str, how: Corruption) -> str:
    if how is Corruption.NOT_JSON:
        return frame[: max(1, len(frame) // 2)] + "\x00not json"
    try:
        parsed = parse_frame(frame)
    except OcppError:
        return frame
    body: list[Any]
    match parsed:
        case Call(unique_id, action, payload):
            body = [2, unique_id, action, _wrong_types(payload)]
        case CallResult(unique_id, payload):
            body = [3, unique_id, _wrong_types(payload)]
        case CallError(unique_id, _code, description, details):
            body = [4, unique_id, 404, description, details]
        case None:
            return frame
    return json.dumps(body, separators=(",", ":"))


def _wrong_types(payload: dict[str, Any]) -> Any:
    """Every top-level value swapped for one of another JSON type; an empty payload becomes a
    list, which no OCPP payload may be."""
    if not payload:
        return []
    swapped: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, bool) or value is None:
            swapped[key] = "yes"
        elif isinstance(value, int | float):
            swapped[key] = str(value)
        elif isinstance(value, str):
            swapped[key] = 12345
        else:
            swapped[key] = True
    return swapped
