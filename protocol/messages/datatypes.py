"""Composite types of OCPP 1.6 edition 2, section 7, shared by several messages."""

from __future__ import annotations

from typing import Annotated

from annotated_types import MinLen

from protocol.messages.base import (
    Boolean,
    CiString20,
    CiString50,
    CiString500,
    Decimal1,
    Integer,
    NonNegativeInteger,
    OcppModel,
    Text,
)
from protocol.messages.enums import (
    AuthorizationStatus,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    Location,
    Measurand,
    Phase,
    ReadingContext,
    RecurrencyKindType,
    UnitOfMeasure,
    ValueFormat,
)
from protocol.messages.timestamps import DateTime, LenientDateTime

__all__ = [
    "AuthorizationData",
    "ChargingProfile",
    "ChargingSchedule",
    "ChargingSchedulePeriod",
    "IdTagInfo",
    "KeyValue",
    "MeterValue",
    "SampledValue",
]


class IdTagInfo(OcppModel):
    """Section 7.25."""

    expiry_date: DateTime | None = None
    parent_id_tag: CiString20 | None = None
    status: AuthorizationStatus


class AuthorizationData(OcppModel):
    """Section 7.2: one entry of a local authorization list."""

    id_tag: CiString20
    id_tag_info: IdTagInfo | None = None


class KeyValue(OcppModel):
    """Section 7.29: one configuration key in GetConfiguration.conf."""

    key: CiString50
    readonly: Boolean
    value: CiString500 | None = None


class ChargingSchedulePeriod(OcppModel):
    """Section 7.14. ``limit`` is in the schedule's rate unit (A per phase or W)."""

    start_period: Integer
    limit: Decimal1
    number_phases: Integer | None = None


class ChargingSchedule(OcppModel):
    """Section 7.13. The periods are 1..* in the section 7 table although the schema omits it."""

    duration: Integer | None = None
    start_schedule: DateTime | None = None
    charging_rate_unit: ChargingRateUnitType
    charging_schedule_period: Annotated[list[ChargingSchedulePeriod], MinLen(1)]
    min_charging_rate: Decimal1 | None = None


class ChargingProfile(OcppModel):
    """Section 7.8. ``transaction_id`` only with purpose TxProfile (section 3.13.2)."""

    charging_profile_id: Integer
    transaction_id: Integer | None = None
    stack_level: NonNegativeInteger
    charging_profile_purpose: ChargingProfilePurposeType
    charging_profile_kind: ChargingProfileKindType
    recurrency_kind: RecurrencyKindType | None = None
    valid_from: DateTime | None = None
    valid_to: DateTime | None = None
    charging_schedule: ChargingSchedule


class SampledValue(OcppModel):
    """Section 7.43. ``value`` is always a string on the wire (a number or signed data).

    Absent optional fields have spec defaults; the ``effective_*`` properties apply them so a
    consumer need not repeat the table, while the model itself still round-trips what was sent.
    """

    value: Text
    context: ReadingContext | None = None
    format: ValueFormat | None = None
    measurand: Measurand | None = None
    phase: Phase | None = None
    location: Location | None = None
    unit: UnitOfMeasure | None = None

    @property
    def effective_context(self) -> ReadingContext:
        return self.context or ReadingContext.SAMPLE_PERIODIC

    @property
    def effective_format(self) -> ValueFormat:
        return self.format or ValueFormat.RAW

    @property
    def effective_measurand(self) -> Measurand:
        return self.measurand or Measurand.ENERGY_ACTIVE_IMPORT_REGISTER

    @property
    def effective_location(self) -> Location:
        return self.location or Location.OUTLET

    @property
    def effective_unit(self) -> UnitOfMeasure:
        return self.unit or UnitOfMeasure.WH


class MeterValue(OcppModel):
    """Section 7.32. Only carried by transaction messages, hence the lenient timestamp
    (section 3.7: they are always answered, see :mod:`protocol.messages.timestamps`)."""

    timestamp: LenientDateTime
    sampled_value: Annotated[list[SampledValue], MinLen(1)]
