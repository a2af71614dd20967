"""The charge point simulator over real loopback WebSockets against a test central system.

Simulated time is a ManualClock: the tests move it, and wait on conditions, never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from protocol import CallErrored, OcppModel
from protocol import messages as m
from shell.clock import ManualClock
from simulators.chargepoint import ChargePoint
from simulators.charger import ChargerSpec
from simulators.vehicles import ChargingCurve, CurveKind, Vehicle
from tests.simulators.sim_central import CentralSystem

CP = "CP001"


@dataclass
class Rig:
    cs: CentralSystem
    cp: ChargePoint
    clock: ManualClock


@asynccontextmanager
async def rig(
    cs: CentralSystem | None = None, *, boot: bool = True, **spec: object
) -> AsyncIterator[Rig]:
    clock = ManualClock()
    settings: dict[str, object] = {"connectors": 2, "max_power_w": 150_000.0, **spec}
    password = settings.pop("password", None)
    async with asyncio.timeout(10), cs or CentralSystem() as central:
        cp = ChargePoint(
            central.url,
            ChargerSpec(CP, **settings),  # type: ignore[arg-type]
            clock=clock,
            password=password,  # type: ignore[arg-type]
            reconnect_delay=0.0,
        )
        async with cp:
            if boot:
                await cp.wait_online()
                await cp.wait_delivered()  # the status of every connector is reported
            yield Rig(central, cp, clock)


async def calls_received(cp: ChargePoint, count: int) -> None:
    """Wait until the charger has received ``count`` CALLs on its current connection."""
    await cp.wait_for(lambda: cp.link is not None and cp.link.stats["CallReceived"] >= count)


def tx_profile(watts: float, transaction_id: int | None, profile_id: int = 1) -> m.ChargingProfile:
    return m.ChargingProfile(
        charging_profile_id=profile_id,
        transaction_id=transaction_id,
        stack_level=1,
        charging_profile_purpose=m.ChargingProfilePurposeType.TX_PROFILE,
        charging_profile_kind=m.ChargingProfileKindType.RELATIVE,
        charging_schedule=m.ChargingSchedule(
            charging_rate_unit=m.ChargingRateUnitType.W,
            charging_schedule_period=[m.ChargingSchedulePeriod(start_period=0, limit=watts)],
        ),
    )


def default_profile(watts: float) -> m.ChargingProfile:
    return m.ChargingProfile(
        charging_profile_id=99,
        stack_level=0,
        charging_profile_purpose=m.ChargingProfilePurposeType.TX_DEFAULT_PROFILE,
        charging_profile_kind=m.ChargingProfileKindType.RELATIVE,
        charging_schedule=m.ChargingSchedule(
            charging_rate_unit=m.ChargingRateUnitType.W,
            charging_schedule_period=[m.ChargingSchedulePeriod(start_period=0, limit=watts)],
        ),
    )


def set_profile(connector: int, profile: m.ChargingProfile) -> m.SetChargingProfileRequest:
    return m.SetChargingProfileRequest(connector_id=connector, cs_charging_profiles=profile)


def dc_car() -> Vehicle:
    return Vehicle("EV1", 0, 3600, 80.0, 0.2, ChargingCurve.of(CurveKind.DC, 100.0))


async def charging(r: Rig, connector: int = 1, vehicle: Vehicle | None = None) -> int:
    await r.cp.plug_in(connector, vehicle)
    await r.cp.start_transaction(connector, "TAG1")
    return await r.cp.wait_transaction_id(connector)


async def test_a_charging_session_end_to_end() -> None:
    async with rig() as r:
        cs, cp, clock = r.cs, r.cp, r.clock
        [boot] = cs.of("BootNotification")
        assert boot.charge_point_vendor == "EVSim"
        await cs.wait_for(lambda: len(cs.of("StatusNotification")) == 3)
        assert [s.connector_id for s in cs.of("StatusNotification")] == [0, 1, 2]

        vehicle = dc_car()
        await cp.plug_in(1, vehicle)
        assert (await cp.authorize("TAG1")).status is m.AuthorizationStatus.ACCEPTED
        await cp.start_transaction(1, "TAG1")
        transaction_id = await cp.wait_transaction_id(1)
        [start] = cs.of("StartTransaction")
        assert (start.connector_id, start.id_tag, start.meter_start) == (1, "TAG1", 0)
        assert transaction_id == 101

        clock.advance(60)  # one MeterValueSampleInterval: 100 kW for a minute
        await cs.wait_for(lambda: len(cs.of("MeterValues")) == 1)
        [meter] = cs.of("MeterValues")
        assert meter.transaction_id == transaction_id
        values = {v.measurand: (v.value, v.unit) for v in meter.meter_value[0].sampled_value}
        assert values[m.Measurand.POWER_ACTIVE_IMPORT] == ("100000.0", m.UnitOfMeasure.W)
        assert values[m.Measurand.ENERGY_ACTIVE_IMPORT_REGISTER] == ("1666.7", m.UnitOfMeasure.WH)
        assert m.Measurand.SOC in values
        assert meter.meter_value[0].sampled_value[0].context is m.ReadingContext.SAMPLE_PERIODIC

        answer = await cs.call(CP, set_profile(1, tx_profile(11_000, transaction_id)))
        assert answer.status is m.ChargingProfileStatus.ACCEPTED
        assert cp.applied_limit_w(1) == 11_000
        [record] = cp.profile_log
        assert record.received_at == record.answered_at == clock.now()
        assert record.accepted and record.connector_id == 1

        clock.advance(60)
        await cs.wait_for(lambda: len(cs.of("MeterValues")) == 2)
        await cp.stop_transaction(1)
        await cs.wait_for(lambda: len(cs.of("StopTransaction")) == 1)
        [stop] = cs.of("StopTransaction")
        assert stop.transaction_id == transaction_id
        assert stop.meter_stop == round(1666.67 + 11_000 / 60)
        assert stop.reason is m.Reason.LOCAL
        assert vehicle.delivered_kwh * 1000 == pytest.approx(stop.meter_stop, abs=1)
        assert cp.applied_limit_w(1) == 150_000  # the TxProfile went with the transaction
        await cp.unplug(1)
        await cs.wait_for(lambda: cs.of("StatusNotification")[-1].status == "Available")


async def test_tx_default_applies_until_the_tx_profile_arrives() -> None:
    async with rig() as r:
        answer = await r.cs.call(CP, set_profile(0, default_profile(22_000)))
        assert answer.status is m.ChargingProfileStatus.ACCEPTED
        transaction_id = await charging(r)
        assert r.cp.applied_limit_w(1) == r.cp.applied_limit_w(2) == 22_000
        wrong = await r.cs.call(CP, set_profile(1, tx_profile(50_000, transaction_id + 1)))
        assert wrong.status is m.ChargingProfileStatus.REJECTED
        right = await r.cs.call(CP, set_profile(1, tx_profile(50_000, transaction_id)))
        assert right.status is m.ChargingProfileStatus.ACCEPTED
        assert (r.cp.applied_limit_w(1), r.cp.applied_limit_w(2)) == (50_000, 22_000)


async def test_a_tx_profile_right_behind_the_start_answer_finds_its_transaction() -> None:
    """The central system writes StartTransaction.conf and, in the same breath, a TxProfile
    for that transaction. A charger reads its socket in order: it has the transactionId by
    the time it handles the profile."""

    def tx_profile_behind_the_start(charger: str, response: OcppModel) -> OcppModel | None:
        if not isinstance(response, m.StartTransactionResponse):
            return None
        return set_profile(1, tx_profile(7_000, response.transaction_id))

    cs = CentralSystem()
    cs.follow_up = tx_profile_behind_the_start
    async with rig(cs) as r:
        await r.cp.plug_in(1)
        await r.cp.start_transaction(1, "TAG1")
        await r.cs.wait_for(lambda: len(r.cs.follow_up_answers) == 1)
        [answer] = r.cs.follow_up_answers
        assert answer.status is m.ChargingProfileStatus.ACCEPTED
        [record] = r.cp.profile_log
        tx = r.cp.transaction(1)
        assert tx is not None and record.profile.transaction_id == tx.transaction_id == 101
        assert r.cp.applied_limit_w(1) == 7_000


async def test_boot_pending_is_retried_after_the_interval() -> None:
    cs = CentralSystem(boot_answers=[(m.RegistrationStatus.PENDING, 30)])
    async with rig(cs, boot=False) as r:
        await r.cs.wait_for(lambda: len(r.cs.of("BootNotification")) == 1)
        await r.cp.wait_for(lambda: r.cp.registration is m.RegistrationStatus.PENDING)
        assert not r.cp.online
        r.clock.advance(30)
        await r.cp.wait_online()
        assert len(r.cs.of("BootNotification")) == 2 and r.cp.boots == 1


async def test_heartbeat_follows_the_interval_from_the_boot_answer() -> None:
    cs = CentralSystem(boot_answers=[(m.RegistrationStatus.ACCEPTED, 120)])
    async with rig(cs) as r:
        r.clock.advance(120)
        await r.cs.wait_for(lambda: len(r.cs.of("Heartbeat")) == 1)


async def test_http_basic_auth() -> None:
    async with rig(CentralSystem(passwords={CP: "s3cret"}), password="s3cret") as r:
        assert r.cp.connections == 1
    async with rig(CentralSystem(passwords={CP: "s3cret"}), boot=False, password="nope") as r:
        await r.cp.wait_for(lambda: r.cp.last_error is not None)
        assert "401" in str(r.cp.last_error)
        assert r.cp.connections == 0


async def test_configuration_reports_the_smart_charging_capabilities() -> None:
    async with rig(rate_units=(m.ChargingRateUnitType.A,)) as r:
        answer = await r.cs.call(
            CP,
            m.GetConfigurationRequest(
                key=["SupportedFeatureProfiles", "ChargingScheduleAllowedChargingRateUnit", "Bogus"]
            ),
        )
        values = {k.key: k.value for k in answer.configuration_key}
        assert "SmartCharging" in values["SupportedFeatureProfiles"].split(",")
        assert values["ChargingScheduleAllowedChargingRateUnit"] == "Current"
        assert answer.unknown_key == ["Bogus"]
        changed = await r.cs.call(
            CP, m.ChangeConfigurationRequest(key="MeterValueSampleInterval", value="15")
        )
        assert changed.status is m.ConfigurationStatus.ACCEPTED


async def test_a_charger_without_smart_charging() -> None:
    async with rig(smart_charging=False) as r:
        answer = await r.cs.call(CP, m.GetConfigurationRequest(key=["SupportedFeatureProfiles"]))
        assert "SmartCharging" not in answer.configuration_key[0].value
        status = await r.cs.call(CP, set_profile(0, default_profile(1000)))
        assert status.status is m.ChargingProfileStatus.NOT_SUPPORTED
        error = await r.cs.call(CP, m.ClearChargingProfileRequest())
        assert isinstance(error, CallErrored) and error.error_code == "NotSupported"


async def test_amps_are_converted_with_voltage_and_phases() -> None:
    async with rig(voltage=230.0, phases=3) as r:
        transaction_id = await charging(r)
        profile = tx_profile(0, transaction_id).model_copy(
            update={
                "charging_schedule": m.ChargingSchedule(
                    charging_rate_unit=m.ChargingRateUnitType.A,
                    charging_schedule_period=[m.ChargingSchedulePeriod(start_period=0, limit=32)],
                )
            }
        )
        await r.cs.call(CP, set_profile(1, profile))
        assert r.cp.applied_limit_w(1) == pytest.approx(32 * 230 * 3)


async def test_unknown_and_unsupported_actions_get_call_errors() -> None:
    async with rig() as r:
        await r.cs.send_raw(CP, '[2,"x1","FlyToTheMoon",{}]')
        await r.cs.wait_for(lambda: any('"x1"' in f for f in r.cs.raw(CP)))
        reply = json.loads(next(f for f in r.cs.raw(CP) if '"x1"' in f))
        assert reply[:3] == [4, "x1", "NotImplemented"]
        unlock = await r.cs.call(CP, m.UnlockConnectorRequest(connector_id=1))
        assert isinstance(unlock, CallErrored) and unlock.error_code == "NotSupported"
        data = await r.cs.call(CP, m.DataTransferRequest(vendor_id="acme"))
        assert data.status is m.DataTransferStatus.UNKNOWN_VENDOR_ID


async def test_remote_start_and_stop() -> None:
    async with rig() as r:
        started = await r.cs.call(CP, m.RemoteStartTransactionRequest(connector_id=2, id_tag="R1"))
        assert started.status is m.RemoteStartStopStatus.ACCEPTED
        transaction_id = await r.cp.wait_transaction_id(2)
        assert r.cs.of("StartTransaction")[0].id_tag == "R1"
        unknown = await r.cs.call(CP, m.RemoteStopTransactionRequest(transaction_id=999))
        assert unknown.status is m.RemoteStartStopStatus.REJECTED
        stopped = await r.cs.call(CP, m.RemoteStopTransactionRequest(transaction_id=transaction_id))
        assert stopped.status is m.RemoteStartStopStatus.ACCEPTED
        await r.cs.wait_for(lambda: len(r.cs.of("StopTransaction")) == 1)
        assert r.cs.of("StopTransaction")[0].reason is m.Reason.REMOTE


async def test_trigger_message_and_composite_schedule() -> None:
    async with rig() as r:
        transaction_id = await charging(r)
        await r.cs.call(CP, set_profile(1, tx_profile(40_000, transaction_id)))
        trigger = m.TriggerMessageRequest(requested_message=m.MessageTrigger.METER_VALUES)
        assert (await r.cs.call(CP, trigger)).status is m.TriggerMessageStatus.ACCEPTED
        await r.cs.wait_for(lambda: len(r.cs.of("MeterValues")) == 1)
        sample = r.cs.of("MeterValues")[0].meter_value[0].sampled_value[0]
        assert sample.context is m.ReadingContext.TRIGGER
        composite = await r.cs.call(
            CP,
            m.GetCompositeScheduleRequest(
                connector_id=1, duration=600, charging_rate_unit=m.ChargingRateUnitType.W
            ),
        )
        assert composite.status is m.GetCompositeScheduleStatus.ACCEPTED
        assert composite.charging_schedule.charging_schedule_period[0].limit == 40_000


async def test_reset_stops_transactions_and_boots_again() -> None:
    async with rig() as r:
        await charging(r)
        answer = await r.cs.call(CP, m.ResetRequest(type=m.ResetType.SOFT))
        assert answer.status is m.ResetStatus.ACCEPTED
        await r.cp.wait_for(lambda: r.cp.boots == 2 and r.cp.online)
        await r.cs.wait_for(lambda: len(r.cs.of("StopTransaction")) == 1)
        assert r.cs.of("StopTransaction")[0].reason is m.Reason.SOFT_RESET
