"""The JSON shapes of the REST API (behaviour spec section 5), in one place."""

from __future__ import annotations

from typing import Any

from controller.battery import Battery
from controller.clock import iso_utc
from controller.sessions import Session
from controller.station import ChargerState, Station


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


def _connector_status(station: Station, charger: ChargerState, connector_id: int) -> str:
    session = station.active_on(charger.config.id, connector_id)
    reported = charger.connectors.get(connector_id + 1)
    if reported is not None and reported.status is not None:
        return reported.status
    return "Charging" if session is not None else "Available"


def charger_view(station: Station, charger: ChargerState) -> dict[str, Any]:
    charger_id = charger.config.id
    connectors = []
    allocated = 0
    for connector_id in range(charger.config.connectors):
        session = station.active_on(charger_id, connector_id)
        if session is not None:
            allocated += session.allocated_power
        reported = charger.connectors.get(connector_id + 1)
        connectors.append(
            {
                "connectorId": connector_id,
                "status": _connector_status(station, charger, connector_id),
                "errorCode": None if reported is None else reported.error_code,
                "sessionId": None if session is None else session.session_id,
            }
        )
    whole = charger.connectors.get(0)
    return {
        "id": charger_id,
        "maxPower": number(charger.config.max_power),
        "connectors": charger.config.connectors,
        "allocatedPower": allocated,
        "connected": charger.connected,
        "booted": charger.booted,
        "status": None if whole is None else whole.status,
        "vendor": charger.vendor,
        "model": charger.model,
        "firmwareVersion": charger.firmware_version,
        "lastSeen": _iso(charger.last_seen),
        "limitsConfirmed": charger.limits_confirmed,
        "smartCharging": charger.smart_charging,
        "connectorStatus": connectors,
    }


def status_view(station: Station) -> dict[str, Any]:
    return {
        "stationId": station.config.station_id,
        "gridCapacity": number(station.config.grid_capacity),
        "availablePower": station.available_power,
        "allocatedPower": station.allocated_power(),
        "gridPower": number(station.grid_power()),
        "strategy": station.strategy.value,
        "battery": battery_view(station.battery),
        "chargers": [charger_view(station, c) for c in station.chargers.values()],
        "sessions": [session_view(s) for s in station.active_sessions()],
    }
