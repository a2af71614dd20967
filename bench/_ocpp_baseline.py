"""The baseline: a minimal OCPP 1.6J central system built on the mobilityhouse ``ocpp`` package.

What a developer would write from the package's README: one ``ocpp.v16.ChargePoint`` subclass
per connection with ``@on`` handlers that answer minimally (BootNotification Accepted,
StartTransaction with a fresh transaction id, MeterValues ``{}``; Heartbeat and
StatusNotification too, should a charger send them), served by ``websockets.serve`` with the
``ocpp1.6`` subprotocol. The package validates every request and response against the JSON
schemas, as it does by default; only where it does so is changed: inline
(``ocpp.messages.ASYNC_VALIDATION = False``) rather than handed to the default thread pool, which
costs this baseline about a quarter of its rate on a 2-core machine. The stronger baseline makes
the fairer comparison. Its per-message INFO logging is off, as in the controller, which runs at
WARNING.
"""

from __future__ import annotations

import contextlib
import itertools
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import ocpp.messages  # type: ignore[import-untyped]
import websockets
from ocpp.routing import on  # type: ignore[import-untyped]
from ocpp.v16 import ChargePoint, call_result  # type: ignore[import-untyped]
from ocpp.v16.enums import (  # type: ignore[import-untyped]
    Action,
    AuthorizationStatus,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class BaselineChargePoint(ChargePoint):  # type: ignore[misc]
    def __init__(self, charger_id: str, connection: Any, transaction_ids: itertools.count[int]):
        super().__init__(charger_id, connection)
        self._transaction_ids = transaction_ids

    @on(Action.boot_notification)  # type: ignore[untyped-decorator]
    def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **_: Any
    ) -> Any:
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)  # type: ignore[untyped-decorator]
    def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)  # type: ignore[untyped-decorator]
    def on_status_notification(self, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on(Action.start_transaction)  # type: ignore[untyped-decorator]
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        return call_result.StartTransaction(
            transaction_id=next(self._transaction_ids),
            id_tag_info={"status": AuthorizationStatus.accepted},
        )

    @on(Action.meter_values)  # type: ignore[untyped-decorator]
    def on_meter_values(self, connector_id: int, meter_value: list[Any], **_: Any) -> Any:
        return call_result.MeterValues()


async def start_baseline(
    host: str, port: int, tls: ssl.SSLContext | None = None
) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Serve on ``host:port`` (0 for any; over TLS with ``tls``); returns the bound port and
    a coroutine to stop."""
    ocpp.messages.ASYNC_VALIDATION = False  # this process serves only the baseline
    transaction_ids = itertools.count(1)

    async def on_connect(websocket: ServerConnection) -> None:
        assert websocket.request is not None
        charger_id = websocket.request.path.rstrip("/").rsplit("/", 1)[-1]
        charge_point = BaselineChargePoint(charger_id, websocket, transaction_ids)
        with contextlib.suppress(websockets.ConnectionClosed):
            await charge_point.start()

    server = await websockets.serve(
        on_connect,
        host,
        port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        ssl=tls,
    )
    bound = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return bound, stop
