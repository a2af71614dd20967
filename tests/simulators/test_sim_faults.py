"""Fault knobs: rejected, held, delayed and unanswered profiles; dropped, duplicated and
garbled frames; reconnection with the transaction queue resent."""

from __future__ import annotations

import asyncio
import json
import random

from protocol import messages as m
from simulators.faults import Corruption, Faults, corrupt, mangle
from tests.simulators.sim_central import CentralSystem
from tests.simulators.test_sim_chargepoint import (
    CP,
    Rig,
    calls_received,
    charging,
    rig,
    set_profile,
    tx_profile,
)

HEARTBEAT = '[2,"a1","Heartbeat",{}]'
START = '[2,"a2","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"x"}]'


def test_mangle_drops_duplicates_and_corrupts_by_the_counters() -> None:
    rng = random.Random(1)
    assert mangle(HEARTBEAT, Faults(drop_probability=1.0), rng) == []
    faults = Faults(duplicate_next=1)
    assert mangle(HEARTBEAT, faults, rng) == [HEARTBEAT, HEARTBEAT]
    assert mangle(HEARTBEAT, faults, rng) == [HEARTBEAT]
    faults = Faults(corrupt_next=1)
    [garbled] = mangle(HEARTBEAT, faults, rng)
    assert garbled != HEARTBEAT and mangle(HEARTBEAT, faults, rng) == [HEARTBEAT]


def test_corruptions() -> None:
    not_json = corrupt(START, Corruption.NOT_JSON)
    try:
        json.loads(not_json)
        raise AssertionError("still JSON")
    except ValueError:
        pass
    wrong = json.loads(corrupt(START, Corruption.WRONG_TYPES))
    assert wrong[:3] == [2, "a2", "StartTransaction"]
    assert wrong[3] == {"connectorId": "1", "idTag": 12345, "meterStart": "0", "timestamp": 12345}
    assert json.loads(corrupt(HEARTBEAT, Corruption.WRONG_TYPES))[3] == []
    assert json.loads(corrupt('[4,"a3","GenericError","",{}]', Corruption.WRONG_TYPES))[2] == 404


def test_rejections_count_down() -> None:
    faults = Faults(reject_next_profiles=2)
    assert [faults.take_profile_rejection() for _ in range(3)] == [True, True, False]
    assert Faults(reject_profiles=True).take_profile_rejection()


async def profile_status(r: Rig, watts: float, transaction_id: int) -> m.ChargingProfileStatus:
    answer = await r.cs.call(CP, set_profile(1, tx_profile(watts, transaction_id)))
    status: m.ChargingProfileStatus = answer.status
    return status


async def test_reject_the_next_profiles_then_accept() -> None:
    async with rig() as r:
        transaction_id = await charging(r)
        r.cp.faults.reject_next_profiles = 1
        assert await profile_status(r, 10_000, transaction_id) is m.ChargingProfileStatus.REJECTED
        assert r.cp.applied_limit_w(1) == 150_000  # nothing applied
        assert await profile_status(r, 10_000, transaction_id) is m.ChargingProfileStatus.ACCEPTED
        assert r.cp.applied_limit_w(1) == 10_000
        r.cp.faults.reject_profiles = True
        assert await profile_status(r, 20_000, transaction_id) is m.ChargingProfileStatus.REJECTED
        assert [p.status.value for p in r.cp.profile_log] == ["Rejected", "Accepted", "Rejected"]


async def test_held_profile_is_applied_only_when_released() -> None:
    async with rig() as r:
        transaction_id = await charging(r)
        release = asyncio.Event()
        r.cp.faults.profile_hold = release
        answer = asyncio.create_task(profile_status(r, 10_000, transaction_id))
        await calls_received(r.cp, 1)
        assert not answer.done()
        assert r.cp.applied_limit_w(1) == 150_000 and r.cp.profile_log == []
        release.set()
        assert await answer is m.ChargingProfileStatus.ACCEPTED
        assert r.cp.applied_limit_w(1) == 10_000


async def test_delayed_profile_answers_after_the_delay_on_the_charger_clock() -> None:
    async with rig() as r:
        transaction_id = await charging(r)
        r.cp.faults.profile_delay = 5.0
        received = r.clock.now()
        answer = asyncio.create_task(profile_status(r, 10_000, transaction_id))
        await calls_received(r.cp, 1)
        assert r.cp.applied_limit_w(1) == 150_000
        r.clock.advance(5.0)
        assert await answer is m.ChargingProfileStatus.ACCEPTED
        [record] = r.cp.profile_log
        assert (record.received_at, record.answered_at) == (received, received + 5.0)


async def test_unanswered_profile_is_applied_but_no_answer_leaves() -> None:
    async with rig() as r:
        transaction_id = await charging(r)
        r.cp.faults.unanswered = {"SetChargingProfile"}
        frame = json.dumps(
            [
                2,
                "lost-1",
                "SetChargingProfile",
                set_profile(1, tx_profile(12_000, transaction_id)).model_dump(
                    mode="json", by_alias=True, exclude_none=True
                ),
            ]
        )
        await r.cs.send_raw(CP, frame)
        await r.cp.wait_for(lambda: len(r.cp.profile_log) == 1)
        # Later calls are still answered; the profile's answer never came.
        answer = await r.cs.call(CP, m.GetConfigurationRequest(key=["NumberOfConnectors"]))
        assert answer.configuration_key[0].value == "2"
        assert not any('"lost-1"' in f for f in r.cs.raw(CP))
        assert r.cp.faults.silenced_answers == 1
        assert r.cp.applied_limit_w(1) == 12_000


async def test_duplicated_frame_arrives_twice() -> None:
    async with rig() as r:
        r.cp.faults.duplicate_next = 1
        await r.cp.plug_in(1)
        await r.cs.wait_for(lambda: len(r.cs.of("StatusNotification")) == 5)
        notifications = [f for f in r.cs.raw(CP) if "StatusNotification" in f]
        assert notifications[-1] == notifications[-2]


async def test_dropped_frames_never_arrive() -> None:
    async with rig() as r:
        before = len(r.cs.raw(CP))
        r.cp.faults.drop_probability = 1.0
        await r.cp.plug_in(1)  # its StatusNotification is lost on the wire
        assert r.cp.faults.dropped_frames == 1
        r.cp.faults.drop_probability = 0.0
        r.clock.advance(10)  # the StatusNotification times out, the next message goes
        await r.cp.plug_in(2)
        await r.cs.wait_for(lambda: len(r.cs.raw(CP)) == before + 1)
        assert r.cs.of("StatusNotification")[-1].connector_id == 2


async def test_garbled_transaction_message_is_retried_until_answered() -> None:
    async with rig() as r:
        r.cp.faults.corrupt_next = 1
        r.cp.faults.corruption = Corruption.WRONG_TYPES
        await r.cp.plug_in(1)  # this StatusNotification goes out garbled...
        await r.cs.wait_for(lambda: any("12345" in f for f in r.cs.raw(CP)))
        await r.cp.wait_delivered()  # ...refused with a CALLERROR and given up
        r.cp.faults.corrupt_next = 1
        await r.cp.start_transaction(1, "TAG1")  # ...and so does the first StartTransaction
        await r.cs.wait_for(lambda: sum('"StartTransaction"' in f for f in r.cs.raw(CP)) == 1)
        assert r.cs.of("StartTransaction") == []  # the central system refused it
        r.clock.advance(30)  # TransactionMessageRetryInterval
        assert await r.cp.wait_transaction_id(1) == 101
        assert len(r.cs.of("StartTransaction")) == 1


async def test_reconnect_resends_the_unanswered_start_transaction() -> None:
    cs = CentralSystem()
    cs.unanswered = {"StartTransaction"}
    async with rig(cs) as r:
        await r.cp.plug_in(1)
        await r.cp.start_transaction(1, "TAG1")
        await r.cs.wait_for(lambda: len(r.cs.of("StartTransaction")) == 1)
        r.cs.unanswered = set()
        await r.cp.disconnect()
        transaction_id = await r.cp.wait_transaction_id(1)
        first, again = r.cs.of("StartTransaction")
        assert first == again  # identical content: the central system can recognise it
        assert transaction_id == 101
        assert (r.cp.connections, r.cp.boots, len(r.cs.of("BootNotification"))) == (2, 1, 1)


async def test_offline_stop_is_delivered_after_reconnecting_with_a_reboot() -> None:
    async with rig() as r:
        transaction_id = await charging(r)
        await r.cp.disconnect(hold=True, reboot=True)
        await r.cp.wait_for(lambda: r.cp.link is None)
        await r.cp.stop_transaction(1)
        assert r.cp.pending_messages == 1
        r.cp.reconnect()
        await r.cs.wait_for(lambda: len(r.cs.of("StopTransaction")) == 1)
        assert r.cs.of("StopTransaction")[0].transaction_id == transaction_id
        assert len(r.cs.of("BootNotification")) == 2
        boot_at = next(
            i for i, (_, a, _) in enumerate(r.cs.received) if a == "BootNotification" and i > 0
        )
        stop_at = next(i for i, (_, a, _) in enumerate(r.cs.received) if a == "StopTransaction")
        assert boot_at < stop_at
