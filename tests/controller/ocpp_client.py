"""A bare OCPP 1.6J charger for the controller's tests, on a real websockets client.

Built on ``protocol.Connection`` like the simulators, but with literal control
over every answer: the test decides per CALL whether to accept, reject or hold
it, and can send raw frames. Waiting is on conditions checked at every frame
received, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from protocol import CallAnswered, CallErrored, CallReceived, Connection, Event, Role
from protocol.messages import (
    BootNotificationRequest,
    ChargingProfileStatus,
    SetChargingProfileRequest,
    SetChargingProfileResponse,
    to_payload,
)
from protocol.messages.base import OcppModel
from protocol.registry import ACTIONS

WAIT = 10.0  # upper bound for any condition in a test; never reached when things work

Policy = Callable[[CallReceived], OcppModel | None]


def accept_everything(call: CallReceived) -> OcppModel | None:
    if isinstance(call.request, SetChargingProfileRequest):
        return SetChargingProfileResponse(status=ChargingProfileStatus.ACCEPTED)
    response_model = ACTIONS[call.action].response
    defaults: dict[str, Any] = {}
    if "status" in response_model.model_fields:
        defaults["status"] = "Accepted"
    return response_model.model_validate(defaults)


@dataclass
class Received:
    call: CallReceived
    answered: bool = False
    response: OcppModel | None = None


@dataclass
class FakeCharger:
    url: str
    charger_id: str
    policy: Policy = accept_everything
    subprotocols: list[str] = field(default_factory=lambda: ["ocpp1.6"])
    received: list[Received] = field(default_factory=list)
    # Everything that arrived, in order: ("call", action) or ("answer", action).
    arrivals: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.connection = Connection(Role.CHARGE_POINT, call_timeout=WAIT)
        self.ws: ClientConnection | None = None
        self._frame = asyncio.Event()
        self._answers: dict[str, asyncio.Future[Event]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, **kwargs: Any) -> FakeCharger:
        self.ws = await websockets.connect(
            f"{self.url}/{self.charger_id}",
            subprotocols=self.subprotocols,
            **kwargs,  # type: ignore[arg-type]
        )
        self.connection = Connection(Role.CHARGE_POINT, call_timeout=WAIT)
        self.closed.clear()
        self._reader = asyncio.create_task(self._read())
        return self

    async def boot(self) -> Any:
        answer = await self.call(
            BootNotificationRequest(charge_point_vendor="Test", charge_point_model="T1")
        )
        return answer

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def call(self, request: OcppModel) -> Any:
        """Send a CALL; the response model, or the CallErrored event."""
        unique_id = self.connection.send_call(request, 0.0)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._answers[unique_id] = future
        await self._flush()
        event = await asyncio.wait_for(future, WAIT)
        if isinstance(event, CallAnswered):
            return event.response
        return event

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    async def next_raw(self) -> str:
        """For tests that read the controller's literal answer frames themselves."""
        assert self.ws is not None and self._reader is None
        return str(await asyncio.wait_for(self.ws.recv(), WAIT))

    async def answer(self, item: Received, response: OcppModel) -> None:
        self.connection.send_result(item.call.unique_id, response)
        item.answered = True
        item.response = response
        await self._flush()
        self._frame.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async def check() -> None:
            while not predicate():
                self._frame.clear()
                await self._frame.wait()

        await asyncio.wait_for(check(), timeout)

    def profiles(self) -> list[SetChargingProfileRequest]:
        return [
            r.call.request
            for r in self.received
            if isinstance(r.call.request, SetChargingProfileRequest)
        ]

    def tx_limits(self) -> list[tuple[int, float]]:
        """(connector, limit) of every TxProfile received, in order."""
        return [
            (
                p.connector_id,
                p.cs_charging_profiles.charging_schedule.charging_schedule_period[0].limit,
            )
            for p in self.profiles()
            if p.cs_charging_profiles.charging_profile_purpose == "TxProfile"
        ]

    def pending(self, action: str = "SetChargingProfile") -> list[Received]:
        return [r for r in self.received if r.call.action == action and not r.answered]

    async def _flush(self) -> None:
        assert self.ws is not None
        for frame in self.connection.data_to_send():
            await self.ws.send(frame)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                for event in self.connection.receive(message, 0.0):
                    if isinstance(event, CallReceived):
                        self.arrivals.append(("call", event.action))
                        item = Received(event)
                        self.received.append(item)
                        response = self.policy(event)
                        if response is not None:
                            self.connection.send_result(event.unique_id, response)
                            item.answered = True
                            item.response = response
                    elif isinstance(event, CallAnswered | CallErrored):
                        self.arrivals.append(("answer", event.action))
                        future = self._answers.pop(event.unique_id, None)
                        if future is not None and not future.done():
                            future.set_result(event)
                await self._flush()
                self._frame.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._answers.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed before the answer"))
            self._answers.clear()
            self.closed.set()
            self._frame.set()


def payload(model: OcppModel) -> dict[str, Any]:
    return to_payload(model)
