"""The JSON shapes of the REST API (docs/api.md), in one place. Pure: they read the core.

No response may hold ``NaN`` or ``Infinity``: they are not JSON, and the dashboard's
``JSON.parse`` fails on them. Every input is bounded, so every number here is finite;
:func:`finite_dumps` makes sure of it (docs/security-input.md).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Final

from controller.core.battery import Battery
from controller.core.sessions import Session
from controller.core.state import ChargerState, ProfileReport
from controller.core.station import StationCore
from shell.clock import iso_utc

log = logging.getLogger(__name__)

# What ``json.dumps`` writes by default, without its NaN and Infinity.
_ENCODER: Final = json.JSONEncoder(allow_nan=False)


def finite_dumps(data: Any) -> str:
    """JSON text of a response. A NaN or an infinity in it is a bug (every input is bounded):
    it is logged with where it was, and sent as null, so the client still gets valid JSON and
    the rest of the answer."""
    try:
        return _ENCODER.encode(data)
    except ValueError:
        found: list[str] = []
        cleaned = _without_non_finite(data, "$", found)
        log.error("non-finite numbers in a response, sent as null: %s", ", ".join(found[:10]))
        return _ENCODER.encode(cleaned)


def _without_non_finite(value: Any, path: str, found: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{path} = {value}")
        return None
    if isinstance(value, dict):
        return {k: _without_non_finite(v, f"{path}.{k}", found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_non_finite(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def number(value: float | None) -> float | int | None:
    """Whole numbers as JSON integers (``400``, not ``400.0``), like the config file."""
    if value is None:
        return None
    rounded = round(float(value), 6)
    return int(rounded) if rounded.is_integer() else rounded


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso_utc(timestamp)


def session_view(session: Session) -> dict[str, Any]:
    return {
        "sessionId": session.session_id,
        "chargerId": session.charger_id,
        "connectorId": session.connector_id,
        "vehicleMaxPower": number(session.vehicle_max_power),
        "learnedMaxPower": number(session.learned_max_power),
        "allocatedPower": session.allocated_power,
        "limitedBy": session.limited_by,
        "consumedPower": number(session.consumed_power),
        "consumedEnergy": number(session.consumed_energy),
        "stateOfCharge": number(session.state_of_charge),
        "startedAt": _iso(session.started_at),
        "stoppedAt": _iso(session.stopped_at),
        "status": session.status.value,
        "origin": session.origin.value,
        "transactionId": session.transaction_id,
    }


def battery_view(battery: Battery | None) -> dict[str, Any] | None:
    if battery is None:
        return None
    flow = battery.flow()
    return {
        "storedEnergy": number(battery.stored_energy),
        "initialCapacity": number(battery.initial_capacity),
        "power": number(battery.power),
        "mode": flow.mode.value,
        "currentPower": number(flow.power),
        "mayDischarge": battery.may_discharge,
    }


def profile_report_view(report: ProfileReport | None) -> dict[str, Any] | None:
    """A charger's last profile: ``result`` null while it is unanswered (docs/api.md)."""
    if report is None:
        return None
    return {
        "purpose": report.purpose,
        # Numbered like connectorStatus (from 0); the failsafe default is for every connector.
        "connectorId": report.connector_id - 1 if report.connector_id > 0 else None,
        "limit": number(report.limit),
        "sentAt": _iso(report.sent_at),
        "result": None if report.result is None else report.result.value,
        "answeredAt": _iso(report.answered_at),
    }


def charger_view(core: StationCore, charger: ChargerState) -> dict[str, Any]:
    charger_id = charger.charger_id
    config = core.charger_config(charger_id)
    connectors = []
    allocated = 0
    for connector_id in range(config.connectors):
        session = core.session_on(charger_id, connector_id)
        if session is not None:
            allocated += session.allocated_power
        reported = core.connectors.get((charger_id, connector_id + 1))
        status = None if reported is None else reported.status
        if status is None:
            status = "Charging" if session is not None else "Available"
        connectors.append(
            {
                "connectorId": connector_id,
                "status": status,
                "errorCode": None if reported is None else reported.error_code,
                "sessionId": None if session is None else session.session_id,
            }
        )
    whole = core.connectors.get((charger_id, 0))
    return {
        "id": charger_id,
        "maxPower": number(config.max_power),
        "connectors": config.connectors,
        "allocatedPower": allocated,
        "connected": charger.connected,
        "booted": charger.booted,
        "status": None if whole is None else whole.status,
        "vendor": charger.vendor,
        "model": charger.model,
        "firmwareVersion": charger.firmware_version,
        "lastSeen": _iso(charger.last_seen),
        "limitsConfirmed": core.limits_confirmed(charger_id),
        "smartCharging": charger.smart_charging,
        "lastProfile": profile_report_view(charger.last_profile),
        "connectorStatus": connectors,
    }


def status_view(core: StationCore) -> dict[str, Any]:
    config = core.config
    return {
        "stationId": config.station_id,
        "gridCapacity": number(config.grid_capacity),
        "availablePower": core.available_power,
        "allocatedPower": core.allocated_power(),
        "gridPower": number(core.grid_power()),
        "strategy": config.allocation.strategy.value,
        "battery": battery_view(core.battery),
        "chargers": [charger_view(core, c) for c in core.chargers.values()],
        "sessions": [session_view(s) for s in core.active_sessions()],
    }
