"""A bare OCPP 1.6J charger for the controller's tests, on a real websockets client.

It runs on the shared shell (:class:`shell.websocket.WebSocketLink`) like the simulators, but
with literal control over every answer: the test's policy decides per CALL whether to answer
at once or hold it (``answer`` it later), and the test can send raw frames. Waiting is on
conditions checked at every frame received, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

from protocol import (
    CallAnswered,
    CallErrored,
    CallReceived,
    CallTimedOut,
    Connection,
    Event,
    Role,
)
from protocol.messages import (
    BootNotificationRequest,
    ChargingProfileStatus,
    SetChargingProfileRequest,
    SetChargingProfileResponse,
    to_payload,
)
from protocol.messages.base import OcppModel
from protocol.registry import ACTIONS
from shell.clock import SystemClock
from shell.link import OcppLink
from shell.websocket import WebSocketLink

WAIT = 10.0  # upper bound for any condition in a test; never reached when things work

# The answer to a CALL, or None to hold it (the test answers it later).
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
    link: OcppLink | None = field(default=None, repr=False)  # the connection it came on


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
        self.closed = asyncio.Event()
        self._link: WebSocketLink | None = None
        self._serving: asyncio.Task[None] | None = None
        self._frame = asyncio.Event()
        self._raw: asyncio.Queue[str] = asyncio.Queue()

    async def connect(self, **kwargs: Any) -> FakeCharger:
        ws = await websockets.connect(
            f"{self.url}/{self.charger_id}",
            subprotocols=self.subprotocols,  # type: ignore[arg-type]
            **kwargs,
        )
        self._link = WebSocketLink(
            ws,
            Connection(Role.CHARGE_POINT, call_timeout=WAIT),
            clock=SystemClock(),
            handler=self._handle,
            name=self.charger_id,
            on_event=self._on_event,
            on_received=self._keep_raw,
        )
        self.closed.clear()
        self._serving = asyncio.create_task(self._serve(self._link))
        return self

    async def boot(self) -> Any:
        return await self.call(
            BootNotificationRequest(charge_point_vendor="Test", charge_point_model="T1")
        )

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
        if self._serving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving

    async def call(self, request: OcppModel) -> Any:
        """Send a CALL; the response model, or the CallErrored event."""
        outcome = await self._connected().link.call(request)
        match outcome:
            case CallAnswered(response=response):
                return response
            case CallErrored():
                return outcome
            case CallTimedOut(action=action):
                raise TimeoutError(f"no answer to {action} within {WAIT:g} s")
            case _:
                raise ConnectionError("connection closed before the answer")

    async def send_raw(self, text: str) -> None:
        link = self._connected()
        link.send_raw(text)
        await link.drained()

    async def next_raw(self) -> str:
        """The next message received, as it came (in order from the connection's first), for
        tests that read the controller's literal frames themselves."""
        return await asyncio.wait_for(self._raw.get(), WAIT)

    async def answer(self, item: Received, response: OcppModel) -> None:
        """Answer a CALL the policy held, on the connection it came on."""
        assert item.link is not None
        item.link.answer(item.call.unique_id, response)
        item.answered = True
        item.response = response
        await self._connected().drained()
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

    def _connected(self) -> WebSocketLink:
        assert self._link is not None, "connect() first"
        return self._link

    def _handle(self, link: OcppLink, call: CallReceived) -> OcppModel | None:
        # Recorded before the policy decides: a policy may look at what is still unanswered.
        item = Received(call, link=link)
        self.received.append(item)
        response = self.policy(call)
        if response is not None:
            item.answered = True
            item.response = response
        return response

    def _keep_raw(self, message: str | bytes) -> None:
        self._raw.put_nowait(message if isinstance(message, str) else message.decode())

    def _on_event(self, event: Event) -> None:
        match event:
            case CallReceived(action=action):
                self.arrivals.append(("call", action))
            case CallAnswered(action=action) | CallErrored(action=action):
                self.arrivals.append(("answer", action))
        self._frame.set()

    async def _serve(self, link: WebSocketLink) -> None:
        try:
            await link.run()
        finally:
            self.closed.set()
            self._frame.set()


def payload(model: OcppModel) -> dict[str, Any]:
    return to_payload(model)
