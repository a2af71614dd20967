"""The SetChargingProfile requests the controller sends (docs/ocpp.md, "Limits to the
charger").

Pure. One fixed ``chargingProfileId`` per connector so that every new
TxProfile replaces the previous one (OCPP 1.6 section 3.13.2) and chargers
never pile up profiles; the failsafe default has an id of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.messages import (
    ChargingProfile,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    ChargingSchedule,
    ChargingSchedulePeriod,
    SetChargingProfileRequest,
)

DEFAULT_PROFILE_ID = 1
TX_PROFILE_ID_BASE = 100
DEFAULT_STACK_LEVEL = 0
TX_STACK_LEVEL = 1


@dataclass(frozen=True, slots=True)
class RateUnit:
    """How a charger wants its limits: watts, or amps per phase."""

    amps: bool = False
    voltage: float = 230.0
    phases: int = 3

    def limit(self, kw: float) -> float:
        """kW -> the schedule's limit: W, or A per phase rounded down to 0.1 A."""
        watts = kw * 1000.0
        if not self.amps:
            return float(math.floor(watts))
        # Rounded down so the charger never draws more than the kW it was given.
        return math.floor(watts / (self.voltage * self.phases) * 10) / 10

    @property
    def unit(self) -> ChargingRateUnitType:
        return ChargingRateUnitType.A if self.amps else ChargingRateUnitType.W


def _schedule(unit: ChargingRateUnitType, limit: float, phases: int | None) -> ChargingSchedule:
    return ChargingSchedule(
        charging_rate_unit=unit,
        charging_schedule_period=[
            ChargingSchedulePeriod(start_period=0, limit=limit, number_phases=phases)
        ],
    )


def _kw_schedule(kw: float, rate: RateUnit) -> ChargingSchedule:
    return _schedule(rate.unit, rate.limit(kw), rate.phases if rate.amps else None)


def current_schedule(amps: float, phases: int) -> ChargingSchedule:
    """A current per phase (the electrical model, docs/electrical.md): already a whole
    number of the charger's steps; 0 pauses the session."""
    return _schedule(ChargingRateUnitType.A, round(amps, 6), phases)


def tx_profile(
    connector_id: int, transaction_id: int, kw: float, rate: RateUnit
) -> SetChargingProfileRequest:
    return tx_profile_of(connector_id, transaction_id, _kw_schedule(kw, rate))


def tx_profile_of(
    connector_id: int, transaction_id: int, schedule: ChargingSchedule
) -> SetChargingProfileRequest:
    """The limit of one transaction (purpose TxProfile, stack level 1, relative to its start)."""
    return SetChargingProfileRequest(
        connector_id=connector_id,
        cs_charging_profiles=ChargingProfile(
            charging_profile_id=TX_PROFILE_ID_BASE + connector_id,
            transaction_id=transaction_id,
            stack_level=TX_STACK_LEVEL,
            charging_profile_purpose=ChargingProfilePurposeType.TX_PROFILE,
            charging_profile_kind=ChargingProfileKindType.RELATIVE,
            charging_schedule=schedule,
        ),
    )


def failsafe_profile(kw_per_connector: float, rate: RateUnit) -> SetChargingProfileRequest:
    return failsafe_profile_of(_kw_schedule(kw_per_connector, rate))


def failsafe_profile_of(schedule: ChargingSchedule) -> SetChargingProfileRequest:
    """What every connector may draw when no TxProfile applies (purpose TxDefaultProfile on
    connector 0, which OCPP 1.6 section 3.13.2 applies to each connector separately)."""
    return SetChargingProfileRequest(
        connector_id=0,
        cs_charging_profiles=ChargingProfile(
            charging_profile_id=DEFAULT_PROFILE_ID,
            stack_level=DEFAULT_STACK_LEVEL,
            charging_profile_purpose=ChargingProfilePurposeType.TX_DEFAULT_PROFILE,
            charging_profile_kind=ChargingProfileKindType.RELATIVE,
            charging_schedule=schedule,
        ),
    )
