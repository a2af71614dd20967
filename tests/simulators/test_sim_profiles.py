"""The charger's profile stack obeys OCPP 1.6 section 3.13 as a real charger does."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from protocol.messages import (
    ChargingProfile,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ChargingSchedule,
    ChargingSchedulePeriod,
    ClearChargingProfileStatus,
    RecurrencyKindType,
)
from simulators.profiles import Electrical, ProfileStack

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
Purpose = ChargingProfilePurposeType
Kind = ChargingProfileKindType
Unit = ChargingRateUnitType
TX_DEFAULT = Purpose.TX_DEFAULT_PROFILE
TX = Purpose.TX_PROFILE
CP_MAX = Purpose.CHARGE_POINT_MAX_PROFILE
ACCEPTED = ChargingProfileStatus.ACCEPTED
REJECTED = ChargingProfileStatus.REJECTED


def profile(
    limit: float | list[tuple[int, float]],
    *,
    purpose: Purpose = TX,
    profile_id: int = 1,
    stack: int = 0,
    unit: Unit = Unit.W,
    kind: Kind = Kind.RELATIVE,
    tx: int | None = None,
    start: datetime | None = None,
    duration: int | None = None,
    recurrency: RecurrencyKindType | None = None,
    valid_to: datetime | None = None,
    phases: int | None = None,
) -> ChargingProfile:
    steps = [(0, limit)] if isinstance(limit, int | float) else limit
    return ChargingProfile(
        charging_profile_id=profile_id,
        transaction_id=tx,
        stack_level=stack,
        charging_profile_purpose=purpose,
        charging_profile_kind=kind,
        recurrency_kind=recurrency,
        valid_to=valid_to,
        charging_schedule=ChargingSchedule(
            duration=duration,
            start_schedule=start,
            charging_rate_unit=unit,
            charging_schedule_period=[
                ChargingSchedulePeriod(start_period=s, limit=v, number_phases=phases)
                for s, v in steps
            ],
        ),
    )


def stack(connectors: int = 2, **kwargs: object) -> ProfileStack:
    return ProfileStack(connectors, Electrical(230.0, 3), **kwargs)  # type: ignore[arg-type]


def test_nothing_installed_means_no_limit() -> None:
    assert stack().limit_w(1, T0) == math.inf


def test_tx_default_on_connector_0_applies_to_every_connector() -> None:
    s = stack()
    assert s.install(0, profile(11000, purpose=TX_DEFAULT), T0, None) is ACCEPTED
    assert s.limit_w(1, T0) == 11000
    assert s.limit_w(2, T0, transaction_start=T0) == 11000


def test_tx_default_on_a_connector_applies_to_that_one_and_beats_connector_0() -> None:
    s = stack()
    s.install(0, profile(11000, purpose=TX_DEFAULT, profile_id=1), T0, None)
    s.install(2, profile(7000, purpose=TX_DEFAULT, profile_id=2), T0, None)
    assert s.limit_w(1, T0) == 11000
    assert s.limit_w(2, T0) == 7000


def test_tx_profile_overrules_tx_default_during_its_transaction() -> None:
    s = stack()
    s.install(0, profile(11000, purpose=TX_DEFAULT, profile_id=1), T0, None)
    assert s.install(1, profile(50000, profile_id=2, stack=1, tx=7), T0, 7) is ACCEPTED
    assert s.limit_w(1, T0, transaction_start=T0) == 50000
    assert s.limit_w(2, T0, transaction_start=T0) == 11000


def test_tx_profile_is_removed_when_the_transaction_ends() -> None:
    s = stack()
    s.install(0, profile(11000, purpose=TX_DEFAULT, profile_id=1), T0, None)
    s.install(1, profile(50000, profile_id=2, stack=1, tx=7), T0, 7)
    s.end_transaction(1)
    assert [p.profile.charging_profile_id for p in s.installed] == [1]
    assert s.limit_w(1, T0, transaction_start=T0) == 11000


@pytest.mark.parametrize(
    ("connector", "tx_in_profile", "running", "expected"),
    [
        (1, 7, 7, ACCEPTED),
        (1, None, 7, ACCEPTED),  # 7.8: transactionId MAY be used to match
        (1, 8, 7, REJECTED),  # another transaction
        (1, 7, None, REJECTED),  # 5.16.3: no transaction on the connector
        (0, None, None, REJECTED),  # TxProfile on the whole charge point
        (3, 7, 7, REJECTED),  # no such connector
    ],
)
def test_tx_profile_needs_the_running_transaction(
    connector: int, tx_in_profile: int | None, running: int | None, expected: ChargingProfileStatus
) -> None:
    assert stack().install(connector, profile(1000, tx=tx_in_profile), T0, running) is expected


def test_a_charger_may_insist_on_the_transaction_id() -> None:
    s = stack(require_transaction_id=True)
    assert s.install(1, profile(1000), T0, 7) is REJECTED
    assert s.install(1, profile(1000, tx=7), T0, 7) is ACCEPTED


def test_highest_stack_level_wins_within_a_purpose() -> None:
    s = stack()
    s.install(1, profile(30000, profile_id=1, stack=1, tx=7), T0, 7)
    s.install(1, profile(20000, profile_id=2, stack=3, tx=7), T0, 7)
    s.install(1, profile(40000, profile_id=3, stack=2, tx=7), T0, 7)
    assert s.limit_w(1, T0, transaction_start=T0) == 20000


def test_a_lower_level_shows_through_when_the_higher_one_has_expired() -> None:
    s = stack()
    s.install(1, profile(30000, profile_id=1, stack=1, tx=7), T0, 7)
    s.install(1, profile(10000, profile_id=2, stack=2, tx=7, duration=600), T0, 7)
    assert s.limit_w(1, T0 + timedelta(seconds=599), transaction_start=T0) == 10000
    assert s.limit_w(1, T0 + timedelta(seconds=600), transaction_start=T0) == 30000


def test_same_profile_id_replaces_the_old_profile() -> None:
    s = stack()
    s.install(1, profile(30000, profile_id=5, stack=1, tx=7), T0, 7)
    s.install(1, profile(20000, profile_id=5, stack=2, tx=7), T0, 7)
    assert len(s.installed) == 1
    assert s.limit_w(1, T0, transaction_start=T0) == 20000


def test_same_purpose_and_stack_level_on_the_same_connector_replaces() -> None:
    s = stack()
    s.install(1, profile(30000, profile_id=1, stack=1, tx=7), T0, 7)
    s.install(1, profile(20000, profile_id=2, stack=1, tx=7), T0, 7)
    s.install(2, profile(25000, profile_id=3, stack=1, tx=8), T0, 8)  # other connector: kept
    assert sorted(p.profile.charging_profile_id for p in s.installed) == [2, 3]
    assert s.limit_w(1, T0, transaction_start=T0) == 20000
    assert s.limit_w(2, T0, transaction_start=T0) == 25000


def test_amps_are_per_phase_at_the_configured_voltage() -> None:
    s = stack()
    s.install(1, profile(16, unit=Unit.A, tx=7), T0, 7)
    assert s.limit_w(1, T0, transaction_start=T0) == pytest.approx(16 * 230 * 3)
    s.install(1, profile(16, unit=Unit.A, tx=7, phases=1), T0, 7)
    assert s.limit_w(1, T0, transaction_start=T0) == pytest.approx(16 * 230)
    assert ProfileStack(1, Electrical(120.0, 1)).electrical.to_watts(10, Unit.A) == 1200


def test_a_unit_the_charger_does_not_allow_is_rejected() -> None:
    s = stack(allowed_units=[Unit.A])
    assert s.install(1, profile(11000, tx=7), T0, 7) is REJECTED
    assert s.install(1, profile(16, unit=Unit.A, tx=7), T0, 7) is ACCEPTED


def test_charge_point_max_profile_caps_everything_and_lives_on_connector_0() -> None:
    s = stack()
    assert s.install(1, profile(40000, purpose=CP_MAX), T0, None) is REJECTED
    assert s.install(0, profile(40000, purpose=CP_MAX, kind=Kind.ABSOLUTE), T0, None) is ACCEPTED
    s.install(1, profile(50000, profile_id=2, tx=7), T0, 7)
    s.install(0, profile(60000, purpose=TX_DEFAULT, profile_id=3), T0, None)
    assert s.limit_w(1, T0, transaction_start=T0) == 40000
    assert s.limit_w(2, T0) == 40000
    assert s.limit_w(0, T0) == 40000


def test_stack_level_and_installed_count_are_bounded() -> None:
    s = stack(max_stack_level=2, max_installed=2)
    assert s.install(0, profile(1, purpose=TX_DEFAULT, stack=3), T0, None) is REJECTED
    assert s.install(0, profile(1, purpose=TX_DEFAULT, stack=1, profile_id=1), T0, None) is ACCEPTED
    assert s.install(0, profile(1, purpose=TX_DEFAULT, stack=2, profile_id=2), T0, None) is ACCEPTED
    assert s.install(1, profile(1, purpose=TX_DEFAULT, stack=0, profile_id=3), T0, None) is REJECTED
    # a replacement does not count twice
    assert s.install(0, profile(2, purpose=TX_DEFAULT, stack=2, profile_id=2), T0, None) is ACCEPTED


def test_transaction_id_is_only_valid_on_a_tx_profile() -> None:
    assert stack().install(0, profile(1, purpose=TX_DEFAULT, tx=7), T0, None) is REJECTED


def test_periods_follow_the_schedule_from_the_transaction_start() -> None:
    s = stack()
    s.install(1, profile([(0, 10000), (900, 20000)], tx=7), T0, 7)
    start = T0 - timedelta(seconds=600)
    assert s.limit_w(1, T0, transaction_start=start) == 10000
    assert s.limit_w(1, T0 + timedelta(seconds=300), transaction_start=start) == 20000


def test_absolute_schedule_starts_at_start_schedule_and_is_silent_before() -> None:
    s = stack()
    later = T0 + timedelta(hours=1)
    s.install(0, profile(5000, purpose=TX_DEFAULT, kind=Kind.ABSOLUTE, start=later), T0, None)
    assert s.limit_w(1, T0) == math.inf
    assert s.limit_w(1, later) == 5000


def test_recurring_daily_schedule_repeats() -> None:
    s = stack()
    night = profile(
        [(0, 3000), (6 * 3600, 11000)],
        purpose=TX_DEFAULT,
        kind=Kind.RECURRING,
        recurrency=RecurrencyKindType.DAILY,
        start=datetime(2025, 12, 1, tzinfo=UTC),
    )
    assert s.install(0, night, T0, None) is ACCEPTED
    assert s.limit_w(1, datetime(2026, 1, 5, 2, tzinfo=UTC)) == 3000
    assert s.limit_w(1, datetime(2026, 1, 5, 7, tzinfo=UTC)) == 11000
    without_kind = profile(1, purpose=TX_DEFAULT, kind=Kind.RECURRING, profile_id=9)
    assert s.install(0, without_kind, T0, None) is REJECTED


def test_valid_to_ends_a_profile() -> None:
    s = stack()
    s.install(0, profile(5000, purpose=TX_DEFAULT, valid_to=T0 + timedelta(minutes=5)), T0, None)
    assert s.limit_w(1, T0) == 5000
    assert s.limit_w(1, T0 + timedelta(minutes=5)) == math.inf


def test_clear_by_id_and_by_criteria() -> None:
    s = stack()
    s.install(0, profile(1, purpose=TX_DEFAULT, profile_id=1), T0, None)
    s.install(1, profile(2, purpose=TX_DEFAULT, profile_id=2, stack=1), T0, None)
    s.install(1, profile(3, profile_id=3, tx=7), T0, 7)
    assert s.clear(profile_id=42) is ClearChargingProfileStatus.UNKNOWN
    assert s.clear(profile_id=2) is ClearChargingProfileStatus.ACCEPTED
    assert s.clear(connector_id=1, purpose=TX_DEFAULT) is ClearChargingProfileStatus.UNKNOWN
    assert s.clear(connector_id=1, purpose=TX) is ClearChargingProfileStatus.ACCEPTED
    assert [p.profile.charging_profile_id for p in s.installed] == [1]
    assert s.clear() is ClearChargingProfileStatus.ACCEPTED
    assert s.installed == ()


def test_composite_schedule_merges_the_stack_in_the_asked_unit() -> None:
    s = stack()
    s.install(0, profile(20000, purpose=TX_DEFAULT, profile_id=1), T0, None)
    s.install(1, profile([(0, 11000), (600, 30000)], profile_id=2, tx=7), T0, 7)
    periods = s.composite(1, T0, 1800, Unit.W, T0, ceiling_w=22000)
    assert [(p.start_period, p.limit) for p in periods] == [(0, 11000), (600, 22000)]
    amps = s.composite(1, T0, 300, Unit.A, T0, ceiling_w=22000)
    assert [(p.start_period, p.limit) for p in amps] == [(0, 15.9)]  # 11000 / 690, rounded down
