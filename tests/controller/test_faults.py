"""Chargers that misbehave or vanish cannot overload the site or stall the others."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from controller.app import ControllerApp
from controller.config import config_from_dict
from protocol import CallReceived
from protocol.messages import (
    GetConfigurationRequest,
    GetConfigurationResponse,
    KeyValue,
    SetChargingProfileRequest,
    StartTransactionRequest,
)
from protocol.messages.base import OcppModel
from shell.clock import ManualClock
from tests.controller.conftest import example_config, many_chargers, ocpp_url, run_timers_until
from tests.controller.ocpp_client import FakeCharger, accept_everything
from tests.controller.test_ocpp_push import Tracker, last_limit, limit_received

T0 = "2026-01-01T10:00:00Z"


def start_request(connector: int) -> StartTransactionRequest:
    return StartTransactionRequest(connector_id=connector, id_tag="T", meter_start=0, timestamp=T0)


async def more_limits(charger: FakeCharger, than: int) -> None:
    await charger.wait_until(lambda: len(charger.tx_limits()) > than, timeout=30)


def never_answer_profiles(call: CallReceived) -> OcppModel | None:
    if isinstance(call.request, SetChargingProfileRequest):
        return None
    return accept_everything(call)


async def test_a_charger_that_never_answers_does_not_delay_the_others(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    mute = FakeCharger(ocpp_url(app), "CP001", policy=never_answer_profiles)
    others = [FakeCharger(ocpp_url(app), c) for c in ("CP002", "CP003")]
    for charger in (mute, *others):
        await charger.connect()
        await charger.boot()
        await charger.call(start_request(1))
        clock.advance(1)
    # Well inside the 10 s call timeout of the mute charger, the others have their limits.
    for charger in others:
        await limit_received(charger, 1, None, timeout=3)
    assert len(mute.pending()) == 1  # its failsafe default, still unanswered
    assert mute.profiles()[0].connector_id == 0


async def test_a_charger_that_accepts_nothing_is_budgeted_at_its_maximum(
    start_controller: Any, clock: ManualClock
) -> None:
    config = example_config(ocpp={"callTimeout": 0.2})
    app: ControllerApp = await start_controller(config)
    mute = FakeCharger(ocpp_url(app), "CP001", policy=never_answer_profiles)
    await mute.connect()
    await mute.boot()
    await mute.call(start_request(1))
    await mute.call(start_request(2))
    # Three profiles unanswered (0.2 s each, with back-off): then it cannot be limited.
    await run_timers_until(app, clock, lambda: not app.core.chargers["CP001"].smart_charging)
    await app.wait_settled()
    powers = sorted(s.allocated_power for s in app.core.active_sessions())
    assert powers == [100, 100]  # its 200 kW shared as it would share them itself
    assert {s.limited_by for s in app.core.active_sessions()} == {"pinned"}
    assert len(mute.profiles()) == 3


def core_only(call: CallReceived) -> OcppModel | None:
    if isinstance(call.request, GetConfigurationRequest):
        return GetConfigurationResponse(
            configuration_key=[
                KeyValue(
                    key="SupportedFeatureProfiles", readonly=True, value="Core,FirmwareManagement"
                )
            ]
        )
    return accept_everything(call)


async def test_a_charger_without_smart_charging_gets_no_profiles(start_controller: Any) -> None:
    app: ControllerApp = await start_controller(example_config(gridCapacity=250, battery=None))
    dumb = FakeCharger(ocpp_url(app), "CP003", policy=core_only)
    smart = FakeCharger(ocpp_url(app), "CP001")
    for charger in (dumb, smart):
        await charger.connect()
        await charger.boot()
    await app.wait_until(lambda: not app.core.chargers["CP003"].smart_charging)
    await dumb.call(start_request(1))
    await smart.call(start_request(1))
    # CP003 may draw all of its 300 kW... the grid has 250: the smart one gets nothing.
    await smart.wait_until(lambda: last_limit(smart, 1) == 0)
    await app.wait_settled()
    assert dumb.profiles() == []
    by_charger = {s.charger_id: s.allocated_power for s in app.core.active_sessions()}
    assert by_charger == {"CP003": 300, "CP001": 0}


async def test_amps_for_chargers_that_take_current(start_controller: Any) -> None:
    data = example_config().model_dump(by_alias=True, mode="json")
    data["chargers"][1].update(rateUnit="A", voltage=230, phases=3)
    app: ControllerApp = await start_controller(config_from_dict(data))
    charger = FakeCharger(ocpp_url(app), "CP002")
    await charger.connect()
    await charger.boot()
    await charger.call(start_request(1))
    await charger.wait_until(lambda: len(charger.tx_limits()) == 1)
    profile = charger.profiles()[-1].cs_charging_profiles
    period = profile.charging_schedule.charging_schedule_period[0]
    assert profile.charging_schedule.charging_rate_unit == "A"
    # 200 kW / (230 V * 3 phases) = 289.855 A, rounded down to 0.1 A.
    assert (period.limit, period.number_phases) == (289.8, 3)


async def test_duplicated_and_reordered_frames_change_nothing_twice(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    await charger.boot()
    frame = json.dumps(
        [
            2,
            "dup-1",
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": T0},
        ]
    )
    await charger.send_raw(frame)
    await charger.send_raw(frame)  # the same frame again (a retransmission)
    await charger.wait_until(lambda: len(list(app.core.active_sessions())) == 1)
    session = next(iter(app.core.active_sessions()))
    # A MeterValues for a transaction that does not exist yet, then the real stop, then
    # a late MeterValues: only the stop counts.
    for payload in (
        [
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": 999,
                "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "1"}]}],
            },
        ],
        [
            "StopTransaction",
            {"transactionId": session.transaction_id, "meterStop": 4000, "timestamp": T0},
        ],
        [
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": session.transaction_id,
                "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "9000"}]}],
            },
        ],
    ):
        await charger.send_raw(json.dumps([2, f"m-{payload[0]}-{len(payload[1])}", *payload]))
    await charger.wait_until(lambda: not session.active)
    assert session.consumed_energy == 4
    await app.driver.flush()
    assert [s.session_id for s in app.repository.stopped_sessions(10)] == [session.session_id]


async def test_500_chargers_dropping_and_reconnecting_at_once(start_controller: Any) -> None:
    app: ControllerApp = await start_controller(config_from_dict(many_chargers(500, grid=2000)))
    tracker = Tracker(root_kw=2000)
    chargers = [FakeCharger(ocpp_url(app), f"C{i:03d}") for i in range(500)]
    for charger in chargers:
        charger.policy = tracker.policy()
    tracker.chargers = chargers
    await asyncio.gather(*(c.connect() for c in chargers))
    await asyncio.gather(*(c.boot() for c in chargers))
    await asyncio.gather(*(c.call(start_request(1)) for c in chargers))
    await asyncio.gather(*(limit_received(c, 1, 4000, timeout=30) for c in chargers))

    await asyncio.gather(*(c.close() for c in chargers))
    await app.wait_until(lambda: not any(s.connected for s in app.core.chargers.values()))
    before = [len(c.tx_limits()) for c in chargers]
    await asyncio.gather(*(c.connect() for c in chargers))  # no boot: a reconnect
    await asyncio.gather(*(more_limits(c, n) for c, n in zip(chargers, before, strict=True)))
    await asyncio.wait_for(app.wait_settled(), 30)
    assert all(s.connected for s in app.core.chargers.values())
    assert all(last_limit(c, 1) == 4000 for c in chargers)
    assert tracker.violations == []
    assert tracker.highest <= 2000
    await asyncio.gather(*(c.close() for c in chargers))


async def test_stop_is_prompt_with_many_chargers_and_a_battery(tmp_path: Path) -> None:
    # Closing 150 connections reallocates while the battery timer (on the real clock,
    # waiting for the battery's next event) is being cancelled: the timer must not
    # swallow its cancellation and hold the stop up.
    config = config_from_dict(
        {
            **many_chargers(150, grid=2000),
            "battery": {"initialCapacity": 500, "power": 100},
        }
    )
    app = ControllerApp(
        config, host="127.0.0.1", rest_port=0, ocpp_port=0, db_path=tmp_path / "c.db"
    )
    await app.start()
    chargers = [FakeCharger(ocpp_url(app), f"C{i:03d}") for i in range(150)]
    await asyncio.gather(*(c.connect() for c in chargers))
    await asyncio.gather(*(c.boot() for c in chargers))
    await asyncio.gather(*(c.call(start_request(1)) for c in chargers))
    async with asyncio.timeout(15):
        await app.stop()
    await asyncio.gather(*(c.closed.wait() for c in chargers))
