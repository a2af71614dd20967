"""The charger model without sockets: limits, meters, suspension, configuration."""

from __future__ import annotations

import pytest

from protocol.messages import (
    ChargePointStatus as S,
)
from protocol.messages import (
    ChargingProfile,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ChargingSchedule,
    ChargingSchedulePeriod,
    ClearChargingProfileRequest,
    ConfigurationStatus,
)
from simulators.charger import ChargerModel, ChargerSpec
from simulators.connector import ConnectorEvent
from simulators.vehicles import ChargingCurve, CurveKind, Vehicle

T0 = 1_767_225_600.0


def profile(
    limit: float,
    purpose: ChargingProfilePurposeType = ChargingProfilePurposeType.TX_PROFILE,
    profile_id: int = 1,
    tx: int | None = None,
    unit: ChargingRateUnitType = ChargingRateUnitType.W,
) -> ChargingProfile:
    return ChargingProfile(
        charging_profile_id=profile_id,
        transaction_id=tx,
        stack_level=1 if purpose is ChargingProfilePurposeType.TX_PROFILE else 0,
        charging_profile_purpose=purpose,
        charging_profile_kind=ChargingProfileKindType.RELATIVE,
        charging_schedule=ChargingSchedule(
            charging_rate_unit=unit,
            charging_schedule_period=[ChargingSchedulePeriod(start_period=0, limit=limit)],
        ),
    )


def model(**kwargs: object) -> ChargerModel:
    spec = ChargerSpec("CP1", **{"connectors": 2, "max_power_w": 200_000.0, **kwargs})  # type: ignore[arg-type]
    return ChargerModel(spec, T0)


def started(m: ChargerModel, connector: int, transaction_id: int, now: float = T0) -> None:
    m.fire(connector, ConnectorEvent.PLUG_IN)
    tx = m.begin_transaction(connector, "TAG", now)
    m.confirm_transaction(tx, transaction_id, now)


def test_without_profiles_the_hardware_limits() -> None:
    m = model(connector_max_power_w=150_000.0)
    assert m.applied_limit_w(1, T0) == 150_000
    assert m.applied_limit_w(0, T0) == 200_000


def test_tx_default_then_tx_profile_then_back_after_the_transaction() -> None:
    m = model()
    default = profile(66_000, ChargingProfilePurposeType.TX_DEFAULT_PROFILE, profile_id=100)
    assert m.set_charging_profile(0, default, T0) is ChargingProfileStatus.ACCEPTED
    assert m.applied_limit_w(1, T0) == 66_000
    assert m.set_charging_profile(1, profile(90_000, tx=5), T0) is ChargingProfileStatus.REJECTED
    started(m, 1, 5)
    assert m.set_charging_profile(1, profile(90_000, tx=5), T0) is ChargingProfileStatus.ACCEPTED
    assert m.applied_limit_w(1, T0) == 90_000
    m.end_transaction(1, T0 + 60)
    assert m.applied_limit_w(1, T0 + 60) == 66_000


def test_meter_and_vehicle_get_the_same_energy() -> None:
    m = model()
    vehicle = Vehicle("V", 0, 7200, 100.0, 0.1, ChargingCurve.of(CurveKind.DC, 150.0))
    m.connector(1).vehicle = vehicle
    started(m, 1, 5)
    m.set_charging_profile(1, profile(50_000, tx=5), T0)
    m.advance(T0 + 1800)
    assert m.connector(1).meter_wh == pytest.approx(25_000)
    assert vehicle.delivered_kwh == pytest.approx(25.0)
    assert m.connector(1).power_w == pytest.approx(50_000)


def test_plain_load_draws_its_limit() -> None:
    m = model()
    started(m, 1, 5)
    m.set_charging_profile(1, profile(16, tx=5, unit=ChargingRateUnitType.A), T0)
    m.advance(T0 + 3600)
    assert m.connector(1).meter_wh == pytest.approx(16 * 230 * 3)


def test_charge_point_cap_is_shared_in_proportion() -> None:
    m = model()
    started(m, 1, 5)
    started(m, 2, 6)
    m.connector(2).demand_w = 50_000.0
    cap = profile(100_000, ChargingProfilePurposeType.CHARGE_POINT_MAX_PROFILE, profile_id=9)
    assert m.set_charging_profile(0, cap, T0) is ChargingProfileStatus.ACCEPTED
    # connector 1 asks 100 kW (its limit), connector 2 asks 50 kW: 150 kW shared into 100 kW
    assert m.connector(1).power_w == pytest.approx(100_000 * 100 / 150)
    assert m.connector(2).power_w == pytest.approx(100_000 * 50 / 150)
    assert m.connector(1).power_w + m.connector(2).power_w == pytest.approx(100_000)


def test_limit_zero_suspends_and_a_raise_resumes() -> None:
    m = model()
    started(m, 1, 5)
    m.set_charging_profile(1, profile(0, tx=5), T0)
    assert m.connector(1).status is S.SUSPENDED_EVSE
    m.set_charging_profile(1, profile(10_000, tx=5), T0)
    assert m.connector(1).status is S.CHARGING
    assert m.take_status_changes() == [1]


def test_a_full_vehicle_suspends_the_connector() -> None:
    m = model()
    m.connector(1).vehicle = Vehicle(
        "V", 0, 7200, 10.0, 0.5, ChargingCurve.of(CurveKind.AC, 11.0), target_soc=0.6
    )
    started(m, 1, 5)
    m.advance(T0 + 3600)
    assert m.connector(1).status is S.SUSPENDED_EV
    assert m.connector(1).meter_wh == pytest.approx(1000)


def test_pending_remote_start_profile_is_installed_with_the_id() -> None:
    m = model()
    m.fire(1, ConnectorEvent.PLUG_IN)
    tx = m.begin_transaction(1, "TAG", T0)
    tx.pending_profile = profile(7_000)
    assert m.applied_limit_w(1, T0) == 200_000
    m.confirm_transaction(tx, 77, T0)
    assert m.applied_limit_w(1, T0) == 7_000


def test_no_smart_charging_means_not_supported() -> None:
    m = model(smart_charging=False)
    default = profile(1, ChargingProfilePurposeType.TX_DEFAULT_PROFILE)
    assert m.set_charging_profile(0, default, T0) is ChargingProfileStatus.NOT_SUPPORTED
    known, _ = m.get_configuration(["SupportedFeatureProfiles"])
    assert known[0].value == "Core,RemoteTrigger"


def test_configuration_reports_and_changes() -> None:
    m = model(rate_units=(ChargingRateUnitType.A,))
    known, unknown = m.get_configuration(["ChargingScheduleAllowedChargingRateUnit", "Nope"])
    assert [(k.key, k.value, k.readonly) for k in known] == [
        ("ChargingScheduleAllowedChargingRateUnit", "Current", True)
    ]
    assert unknown == ["Nope"]
    assert m.change_configuration("HeartbeatInterval", "60") is ConfigurationStatus.ACCEPTED
    assert m.int_setting("HeartbeatInterval") == 60
    assert m.change_configuration("HeartbeatInterval", "soon") is ConfigurationStatus.REJECTED
    assert m.change_configuration("NumberOfConnectors", "3") is ConfigurationStatus.REJECTED
    assert m.change_configuration("Nope", "1") is ConfigurationStatus.NOT_SUPPORTED
    all_keys, _ = m.get_configuration(None)
    assert {"SupportedFeatureProfiles", "MeterValueSampleInterval"} <= {k.key for k in all_keys}


def test_clear_and_composite_schedule() -> None:
    m = model()
    started(m, 1, 5)
    m.set_charging_profile(1, profile(11_000, tx=5), T0)
    schedule = m.composite_schedule(1, 600, ChargingRateUnitType.W, T0)
    assert [(p.start_period, p.limit) for p in schedule.charging_schedule_period] == [(0, 11_000)]
    request = ClearChargingProfileRequest(id=1)
    assert m.clear_charging_profile(request, T0).value == "Accepted"
    assert m.applied_limit_w(1, T0) == 200_000
