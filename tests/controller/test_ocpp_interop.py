"""Interoperability with a client nobody here wrote: the mobilityhouse ``ocpp`` package.

Its v16 ``ChargePoint`` talks to the controller over a real WebSocket: boot,
authorise, two transactions on CP001 and one on CP002, MeterValues, stop. The
limits it receives must be the allocator's and sum within the root limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, ChargingProfileStatus

from allocator import Demand, allocate
from controller.app import ControllerApp
from shell.clock import ManualClock
from tests.controller.conftest import ocpp_url


class ThirdPartyCharger(ChargePoint):  # type: ignore[misc]
    def __init__(self, charger_id: str, connection: Any) -> None:
        super().__init__(charger_id, connection)
        self.limits: dict[int, float] = {}
        self.changed = asyncio.Event()

    @on(Action.set_charging_profile)  # type: ignore[untyped-decorator]
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        if cs_charging_profiles["charging_profile_purpose"] == "TxProfile":
            period = cs_charging_profiles["charging_schedule"]["charging_schedule_period"][0]
            self.limits[connector_id] = period["limit"]
            self.changed.set()
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @on(Action.get_configuration)  # type: ignore[untyped-decorator]
    def on_get_configuration(self, **_: Any) -> Any:
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": "SupportedFeatureProfiles", "readonly": True, "value": "Core,SmartCharging"}
            ]
        )

    async def until(self, predicate: Any) -> None:
        async def check() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(check(), 10)


@contextlib.asynccontextmanager
async def third_party(app: ControllerApp, charger_id: str) -> AsyncIterator[ThirdPartyCharger]:
    async with websockets.connect(f"{ocpp_url(app)}/{charger_id}", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        charger = ThirdPartyCharger(charger_id, ws)
        task = asyncio.create_task(charger.start())
        try:
            yield charger
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


async def start(charger: ThirdPartyCharger, connector: int, tag: str) -> int:
    answer = await charger.call(
        call.StartTransaction(
            connector_id=connector, id_tag=tag, meter_start=1000, timestamp="2026-01-01T08:00:00Z"
        )
    )
    assert answer.id_tag_info["status"] == "Accepted"
    return int(answer.transaction_id)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_third_party_charge_points(start_controller: Any, clock: ManualClock) -> None:
    app: ControllerApp = await start_controller()
    async with third_party(app, "CP001") as cp1, third_party(app, "CP002") as cp2:
        for charger in (cp1, cp2):
            boot = await charger.call(
                call.BootNotification(
                    charge_point_model="Wallbox X", charge_point_vendor="Elsewhere"
                )
            )
            assert boot.status == "Accepted" and boot.interval == 300
            auth = await charger.call(call.Authorize(id_tag="DRIVER"))
            assert auth.id_tag_info["status"] == "Accepted"

        tx1 = await start(cp1, 1, "D1")
        clock.advance(1)
        tx2 = await start(cp1, 2, "D2")
        clock.advance(1)
        tx3 = await start(cp2, 1, "D3")
        assert len({tx1, tx2, tx3}) == 3

        await cp1.until(lambda: cp1.limits == {1: 100000, 2: 100000})
        await cp2.until(lambda: cp2.limits == {1: 200000})
        # The values are the allocator's for these sessions, and within the root limit.
        sessions = list(app.core.active_sessions())
        expected = allocate(
            app.config.tree(),
            [Demand(s.session_id, s.charger_id, s.started_at) for s in sessions],
            app.core.available_power,
        )
        pushed = {(s.charger_id, s.connector_id + 1): s for s in sessions}
        for (charger_id, connector), session in pushed.items():
            limits = cp1.limits if charger_id == "CP001" else cp2.limits
            assert limits[connector] == expected[session.session_id].power * 1000
        assert sum(cp1.limits.values()) + sum(cp2.limits.values()) <= 500_000

        await cp1.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx1,
                meter_value=[
                    {
                        "timestamp": "2026-01-01T08:10:00Z",
                        "sampled_value": [
                            {"value": "98000", "measurand": "Power.Active.Import", "unit": "W"},
                            {
                                "value": "17.5",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "kWh",
                            },
                        ],
                    }
                ],
            )
        )
        session1 = app.core.session_by_transaction(tx1)
        assert session1 is not None
        assert session1.consumed_power == 98
        assert session1.consumed_energy == pytest.approx(16.5)

        stop = await cp1.call(
            call.StopTransaction(
                meter_stop=21000, timestamp="2026-01-01T08:20:00Z", transaction_id=tx1, id_tag="D1"
            )
        )
        assert stop.id_tag_info["status"] == "Accepted"
        # CP001's remaining session may now take the whole charger.
        await cp1.until(lambda: cp1.limits.get(2) == 200000)

        status = app.status()
        assert {s["transactionId"] for s in status["sessions"]} == {tx2, tx3}
        cp001 = next(c for c in status["chargers"] if c["id"] == "CP001")
        assert cp001["connected"] and cp001["booted"]
        assert (cp001["vendor"], cp001["model"]) == ("Elsewhere", "Wallbox X")
        assert not session1.active and session1.consumed_energy == pytest.approx(20)
