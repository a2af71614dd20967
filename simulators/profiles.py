"""A charge point's smart-charging profile stack (OCPP 1.6 edition 2, sections 3.13 and 5.16).

Pure: profiles in, limits in watts out, time passed in as an aware ``datetime``. The rules, as
a charger applies them:

* Purposes (3.13.1). ``ChargePointMaxProfile`` lives on connector 0 only and caps the whole
  charge point. ``TxDefaultProfile`` on connector 0 applies to every connector, on connector n
  to that one. ``TxProfile`` applies to the transaction running on its connector and, while it
  is in force, overrules the TxDefaultProfile; it is removed when that transaction ends.
* Stacking (3.13.2). Among the profiles of one purpose the highest ``stackLevel`` that has a
  schedule period in force at that moment wins; a lower level shows through when the higher
  one is not valid (validFrom/validTo, duration elapsed). A connector-specific TxDefaultProfile
  beats one on connector 0 at the same level.
* Replacement (5.16.2, with the errata's "on the same connector"). A new profile replaces the
  installed one with the same ``chargingProfileId``, or with the same purpose and stack level
  on the same connector; otherwise it is added.
* Rejection (5.16.3). A TxProfile needs a transaction on its connector (and, when it names a
  ``transactionId``, that transaction); a ChargePointMaxProfile needs connector 0; a
  ``transactionId`` is only valid with a TxProfile; stack levels and the number of installed
  profiles are bounded by ChargeProfileMaxStackLevel and MaxChargingProfilesInstalled; the rate
  unit must be one ChargingScheduleAllowedChargingRateUnit allows.
* Units (7.13, 7.14). A limit in A is per phase: watts = A * voltage * phases, where the
  period's ``numberPhases`` (default 3) overrides the configured phase count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocol.messages import (
    ChargingProfile,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ChargingSchedulePeriod,
    ClearChargingProfileStatus,
    RecurrencyKindType,
)

__all__ = ["Electrical", "InstalledProfile", "ProfileStack", "Rate", "to_datetime"]

Purpose = ChargingProfilePurposeType
Unit = ChargingRateUnitType
_RECURRENCE = {
    RecurrencyKindType.DAILY: timedelta(days=1),
    RecurrencyKindType.WEEKLY: timedelta(days=7),
}


def to_datetime(timestamp: float) -> datetime:
    """Epoch seconds (the clocks' currency) -> the aware UTC datetime profiles are timed in."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


@dataclass(frozen=True, slots=True)
class Electrical:
    """How the charger turns amps per phase into watts."""

    voltage: float = 230.0
    phases: int = 3

    def to_watts(self, limit: float, unit: Unit, number_phases: int | None = None) -> float:
        if unit is Unit.W:
            return limit
        return limit * self.voltage * (number_phases or self.phases)

    def from_watts(self, watts: float, unit: Unit) -> float:
        """Rounded down to the 0.1 the schema allows, so the figure never overstates a limit."""
        value = watts if unit is Unit.W else watts / (self.voltage * self.phases)
        return math.floor(value * 10 + 1e-9) / 10


@dataclass(frozen=True, slots=True)
class Rate:
    """One schedule period's limit as sent: a value in W (the whole connector) or in A (per
    phase), with the period's ``numberPhases`` (None: not given)."""

    limit: float
    unit: Unit
    number_phases: int | None = None

    def amps_per_phase(self, voltage: float, phases: int) -> float:
        """The current per phase it allows a load drawing on ``phases`` phases."""
        if self.unit is Unit.A:
            return self.limit
        return self.limit / (voltage * phases)


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    connector_id: int
    profile: ChargingProfile
    # Start of an Absolute or Recurring schedule that has no startSchedule: the moment it was
    # installed, which is what chargers do with such a profile.
    installed_at: datetime

    @property
    def purpose(self) -> Purpose:
        return self.profile.charging_profile_purpose

    @property
    def stack_level(self) -> int:
        return self.profile.stack_level


class ProfileStack:
    def __init__(
        self,
        connectors: int,
        electrical: Electrical | None = None,
        *,
        max_stack_level: int = 8,
        max_installed: int = 16,
        allowed_units: Iterable[Unit] = (Unit.A, Unit.W),
        require_transaction_id: bool = False,
    ) -> None:
        self.connectors = connectors
        self.electrical = electrical or Electrical()
        self.max_stack_level = max_stack_level
        self.max_installed = max_installed
        self.allowed_units = frozenset(allowed_units)
        # 7.8 makes transactionId optional ("MAY be used to match"); some chargers insist.
        self.require_transaction_id = require_transaction_id
        self._installed: list[InstalledProfile] = []

    @property
    def installed(self) -> tuple[InstalledProfile, ...]:
        return tuple(self._installed)

    # -- SetChargingProfile / ClearChargingProfile ----------------------------------------------

    def install(
        self,
        connector_id: int,
        profile: ChargingProfile,
        now: datetime,
        running_transaction: int | None,
    ) -> ChargingProfileStatus:
        """SetChargingProfile.req; ``running_transaction`` is the id of the transaction on
        ``connector_id`` (None when there is none, or its id is not known yet)."""
        if not self._acceptable(connector_id, profile, running_transaction):
            return ChargingProfileStatus.REJECTED
        kept = [
            p
            for p in self._installed
            if p.profile.charging_profile_id != profile.charging_profile_id
            and not (
                p.connector_id == connector_id
                and p.purpose is profile.charging_profile_purpose
                and p.stack_level == profile.stack_level
            )
        ]
        if len(kept) >= self.max_installed:
            return ChargingProfileStatus.REJECTED
        kept.append(InstalledProfile(connector_id, profile, now))
        self._installed = kept
        return ChargingProfileStatus.ACCEPTED

    def _acceptable(
        self, connector_id: int, profile: ChargingProfile, running_transaction: int | None
    ) -> bool:
        purpose = profile.charging_profile_purpose
        schedule = profile.charging_schedule
        if not 0 <= connector_id <= self.connectors:
            return False
        if profile.stack_level > self.max_stack_level:
            return False
        if schedule.charging_rate_unit not in self.allowed_units:
            return False
        if (
            profile.charging_profile_kind is ChargingProfileKindType.RECURRING
            and profile.recurrency_kind is None
        ):
            return False
        if purpose is Purpose.CHARGE_POINT_MAX_PROFILE:
            return connector_id == 0 and profile.transaction_id is None
        if purpose is Purpose.TX_DEFAULT_PROFILE:
            return profile.transaction_id is None
        # TxProfile: only for the transaction running on that very connector.
        if connector_id == 0 or running_transaction is None:
            return False
        if profile.transaction_id is None:
            return not self.require_transaction_id
        return profile.transaction_id == running_transaction

    def clear(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> ClearChargingProfileStatus:
        """ClearChargingProfile.req (5.5): by id, else by every criterion given; none = all."""

        def matches(p: InstalledProfile) -> bool:
            if profile_id is not None:
                return p.profile.charging_profile_id == profile_id
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose is purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in self._installed if not matches(p)]
        removed = len(kept) < len(self._installed)
        self._installed = kept
        if removed:
            return ClearChargingProfileStatus.ACCEPTED
        return ClearChargingProfileStatus.UNKNOWN

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives only as long as its transaction (3.13.1)."""
        self._installed = [
            p
            for p in self._installed
            if not (p.purpose is Purpose.TX_PROFILE and p.connector_id == connector_id)
        ]

    # -- limits ---------------------------------------------------------------------------------

    def limit_w(
        self, connector_id: int, now: datetime, transaction_start: datetime | None = None
    ) -> float:
        """What the profiles allow on ``connector_id`` at ``now`` (inf: nothing limits it).
        Connector 0 gives the ChargePointMaxProfile. ``transaction_start`` anchors Relative
        schedules; without a transaction they start "now", i.e. their first period applies."""
        own, cap = self.rates(connector_id, now, transaction_start)
        return min(self._watts(own), self._watts(cap))

    def limit_per_phase(
        self,
        connector_id: int,
        now: datetime,
        transaction_start: datetime | None,
        phases: int,
    ) -> tuple[float, int]:
        """The current per phase (A; inf: nothing limits it) the profiles allow a load on
        ``connector_id`` that can draw on ``phases`` phases, and the phases it may use: the
        winning profile's ``numberPhases`` lowers them. A limit in A is per phase whatever the
        phases; one in W is shared by the phases used."""
        own, cap = self.rates(connector_id, now, transaction_start)
        if own is not None and own.number_phases is not None:
            phases = max(1, min(phases, own.number_phases))
        voltage = self.electrical.voltage
        amps = min(
            math.inf if rate is None else rate.amps_per_phase(voltage, phases)
            for rate in (own, cap)
        )
        return amps, phases

    def rates(
        self, connector_id: int, now: datetime, transaction_start: datetime | None = None
    ) -> tuple[Rate | None, Rate | None]:
        """The connector's own winning limit (its TxProfile, else a TxDefaultProfile; None on
        connector 0) and the ChargePointMaxProfile's, each None when none is in force."""
        cap = self._winner(self._of(Purpose.CHARGE_POINT_MAX_PROFILE, (0,)), now, None)
        if connector_id == 0:
            return None, cap
        own: Rate | None = None
        if transaction_start is not None:
            own_profiles = self._of(Purpose.TX_PROFILE, (connector_id,))
            own = self._winner(own_profiles, now, transaction_start)
        if own is None:
            candidates = self._of(Purpose.TX_DEFAULT_PROFILE, (connector_id, 0))
            # Highest level first; at equal level the connector's own profile beats connector 0.
            candidates.sort(key=lambda p: (p.stack_level, p.connector_id != 0), reverse=True)
            own = self._first_in_force(candidates, now, transaction_start)
        return own, cap

    def _watts(self, rate: Rate | None) -> float:
        if rate is None:
            return math.inf
        return self.electrical.to_watts(rate.limit, rate.unit, rate.number_phases)

    def composite(
        self,
        connector_id: int,
        start: datetime,
        duration: int,
        unit: Unit,
        transaction_start: datetime | None,
        ceiling_w: float,
    ) -> list[ChargingSchedulePeriod]:
        """GetCompositeSchedule (5.7): the limit over ``[start, start + duration)`` as periods,
        with ``ceiling_w`` (the hardware) standing in wherever no profile limits."""
        end = start + timedelta(seconds=duration)
        moments = sorted({start, *(t for t in self._changes(start, end, transaction_start))})
        periods: list[ChargingSchedulePeriod] = []
        last: float | None = None
        for moment in moments:
            watts = min(self.limit_w(connector_id, moment, transaction_start), ceiling_w)
            value = self.electrical.from_watts(watts, unit)
            if value != last:
                offset = int((moment - start).total_seconds())
                periods.append(ChargingSchedulePeriod(start_period=offset, limit=value))
                last = value
        return periods

    # -- internals ------------------------------------------------------------------------------

    def _of(self, purpose: Purpose, connectors: Sequence[int]) -> list[InstalledProfile]:
        return [p for p in self._installed if p.purpose is purpose and p.connector_id in connectors]

    def _winner(
        self, profiles: list[InstalledProfile], now: datetime, tx_start: datetime | None
    ) -> Rate | None:
        profiles.sort(key=lambda p: p.stack_level, reverse=True)
        return self._first_in_force(profiles, now, tx_start)

    def _first_in_force(
        self, profiles: Iterable[InstalledProfile], now: datetime, tx_start: datetime | None
    ) -> Rate | None:
        for installed in profiles:
            limit = self._limit_at(installed, now, tx_start)
            if limit is not None:
                return limit
        return None

    def _schedule_start(
        self, installed: InstalledProfile, now: datetime, tx_start: datetime | None
    ) -> datetime | None:
        profile = installed.profile
        anchor = profile.charging_schedule.start_schedule or installed.installed_at
        match profile.charging_profile_kind:
            case ChargingProfileKindType.ABSOLUTE:
                return anchor
            case ChargingProfileKindType.RELATIVE:
                return tx_start or now
            case ChargingProfileKindType.RECURRING:
                assert profile.recurrency_kind is not None  # refused at install otherwise
                if now < anchor:
                    return None
                every = _RECURRENCE[profile.recurrency_kind]
                return anchor + every * ((now - anchor) // every)

    def _limit_at(
        self, installed: InstalledProfile, now: datetime, tx_start: datetime | None
    ) -> Rate | None:
        profile = installed.profile
        if profile.valid_from is not None and now < profile.valid_from:
            return None
        if profile.valid_to is not None and now >= profile.valid_to:
            return None
        start = self._schedule_start(installed, now, tx_start)
        if start is None or now < start:
            return None
        schedule = profile.charging_schedule
        elapsed = (now - start).total_seconds()
        if schedule.duration is not None and elapsed >= schedule.duration:
            return None
        current: ChargingSchedulePeriod | None = None
        for period in sorted(schedule.charging_schedule_period, key=lambda p: p.start_period):
            if period.start_period <= elapsed:
                current = period
        if current is None:
            return None
        return Rate(current.limit, schedule.charging_rate_unit, current.number_phases)

    def _changes(
        self, start: datetime, end: datetime, tx_start: datetime | None
    ) -> Iterable[datetime]:
        """Every moment in ``(start, end)`` at which some profile's limit may change."""
        for installed in self._installed:
            profile = installed.profile
            schedule = profile.charging_schedule
            edges = [profile.valid_from, profile.valid_to]
            anchors: list[datetime] = []
            if profile.charging_profile_kind is ChargingProfileKindType.RECURRING:
                assert profile.recurrency_kind is not None
                every = _RECURRENCE[profile.recurrency_kind]
                anchor = self._schedule_start(installed, start, tx_start)
                anchor = anchor or schedule.start_schedule or installed.installed_at
                while anchor < end:
                    anchors.append(anchor)
                    anchor += every
            else:
                anchor = self._schedule_start(installed, start, tx_start)
                anchors.extend([anchor] if anchor is not None else [])
            for anchor in anchors:
                edges.append(anchor)
                edges += [
                    anchor + timedelta(seconds=p.start_period)
                    for p in schedule.charging_schedule_period
                ]
                if schedule.duration is not None:
                    edges.append(anchor + timedelta(seconds=schedule.duration))
            yield from (t for t in edges if t is not None and start < t < end)
