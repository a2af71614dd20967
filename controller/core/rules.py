"""The station's rules that need no state: back-off, what identifies a StartTransaction,
whom to accept, and what a session counts for (docs/ocpp.md, docs/allocation.md)."""

from __future__ import annotations

import json
import math

from allocator import ChargerNode, Demand, StationTree, allocate
from controller.config import ChargerConfig, StationConfig
from controller.core.sessions import Session
from protocol.messages import AuthorizationStatus

MAX_BACKOFF = 60.0
# After this many refusals (rejected, CALLERROR or no answer) with none ever accepted, a
# charger is taken for one that cannot be limited (docs/ocpp.md, "Chargers that take no
# limits").
REJECTIONS_BEFORE_UNLIMITABLE = 3
# GetConfiguration keys (OCPP 1.6 section 9.1) read after every boot.
FEATURE_PROFILES_KEY = "SupportedFeatureProfiles"
RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"
CONFIGURATION_KEYS = (FEATURE_PROFILES_KEY, RATE_UNIT_KEY)
# StartTransaction keys older than this are not kept: a charger resends an unanswered
# start within minutes of reconnecting, not weeks later.
START_KEY_MEMORY = 7 * 24 * 3600.0


def backoff(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones: 1, 2, 4 ... 60."""
    return min(MAX_BACKOFF, 2.0 ** max(0, failures - 1))


def start_key_text(
    charger_id: str, connector_id: int, id_tag: str, timestamp: str, meter_start: int
) -> str:
    """What makes two StartTransaction requests the same one, resent (docs/ocpp.md,
    "Transactions"), as stored: compact JSON, so numbers of any size fit."""
    return json.dumps(
        [charger_id, connector_id, id_tag, timestamp, meter_start], separators=(",", ":")
    )


def id_tag_status(config: StationConfig, id_tag: str | None) -> AuthorizationStatus:
    """Accepted unless the config lists the idTags it accepts and this is not one of them."""
    allowed = config.ocpp.authorized_id_tags
    if allowed is None or id_tag is None:
        return AuthorizationStatus.ACCEPTED
    # idTags are CiString20: compared without regard to case (OCPP 1.6 section 7).
    wanted = id_tag.casefold()
    if any(tag.casefold() == wanted for tag in allowed):
        return AuthorizationStatus.ACCEPTED
    return AuthorizationStatus.INVALID


def demand_of(session: Session) -> Demand:
    return Demand(
        session_id=session.session_id,
        charger_id=session.charger_id,
        started_at=session.started_at,
        vehicle_max_power=session.cap,
    )


def session_load(session: Session) -> float:
    """What a session counts for in the station load (docs/allocation.md, "The station
    load"): its reading, or its limit while it has none or its limit went up since."""
    consumed = session.consumed_power
    if consumed is None:
        return float(session.allocated_power)
    if session.reading_stale:
        return max(consumed, float(session.allocated_power))
    return consumed


def physical_maximum(charger: ChargerConfig, sessions: list[Session]) -> dict[str, int]:
    """What a charger that cannot be limited lets its sessions draw: its own maximum
    shared among them as it would share it, each up to its vehicle's maximum."""
    tree = StationTree(chargers=(ChargerNode(charger.id, charger.max_power),))
    demands = [
        Demand(s.session_id, charger.id, s.started_at, s.vehicle_max_power) for s in sessions
    ]
    limits = allocate(tree, demands, math.inf)
    return {session_id: limit.power for session_id, limit in limits.items()}
