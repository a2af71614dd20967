"""aiohttp REST API on port 4567 (behaviour spec section 5).

The four endpoints of the original system keep their paths and bodies; the
session and status JSON are in ``controller.views``. Every error is JSON with
``error``, ``message`` and ``details``; a middleware turns aiohttp's own
404/405 into that shape and any unexpected exception into a bare 500 without
internals (which the tests make sure never happens for client input).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from controller.rest_schemas import (
    ApiError,
    PowerUpdateBody,
    StartSessionBody,
    StopSessionBody,
    parse_body,
)
from controller.service import StationService
from controller.sessions import (
    ConnectorBusy,
    InvalidConnector,
    SessionAlreadyStopped,
    StationError,
    UnknownCharger,
    UnknownSession,
)
from controller.store import StoreError
from controller.views import session_view

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", StationService)

_STATUS_FOR: dict[type[StationError], int] = {
    UnknownCharger: 404,
    UnknownSession: 404,
    InvalidConnector: 400,
    ConnectorBusy: 409,
    SessionAlreadyStopped: 409,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


def _station_error(error: StationError) -> ApiError:
    status = _STATUS_FOR.get(type(error), 400)
    if error.field is None:
        return ApiError(status, error.code, error.message)
    details = [{"field": error.field, "message": error.message}]
    return ApiError(status, error.code, f"{error.field}: {error.message}", details)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return _error_response(error)
    except StationError as error:
        return _error_response(_station_error(error))
    except StoreError:
        log.exception("cannot write the database")
        return _error_response(
            ApiError(503, "storage_unavailable", "the change could not be stored; retry later")
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status, "http_error")
        body = ApiError(error.status, code, error.reason).body()
        return web.json_response(body, status=error.status, headers=_allow_header(error))
    except Exception:
        # Never echo internals to a client; the log keeps the traceback.
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response(
            ApiError(500, "internal_error", "internal error").body(), status=500
        )


def _allow_header(error: web.HTTPException) -> dict[str, str]:
    allow = error.headers.get("Allow")
    return {} if allow is None else {"Allow": allow}


async def station_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].status())


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        message = f"must be an integer from {low} to {high}"
        raise ApiError(
            400, "invalid_field", f"{name}: {message}", [{"field": name, "message": message}]
        )
    return value


async def list_sessions(request: web.Request) -> web.Response:
    wanted = request.query.get("status")
    if wanted not in (None, "active", "stopped"):
        raise ApiError(
            400,
            "invalid_field",
            "status: must be one of 'active' or 'stopped'",
            [{"field": "status", "message": "must be one of 'active' or 'stopped'"}],
        )
    limit = _query_int(request, "limit", 1000, 1, 100_000)
    return web.json_response(await request.app[SERVICE].list_sessions(wanted, limit))


async def get_session(request: web.Request) -> web.Response:
    view = await request.app[SERVICE].session_view(request.match_info["session_id"])
    return web.json_response(view)


async def station_events(request: web.Request) -> web.Response:
    since = _query_int(request, "since", 0, 0, 2**62)
    limit = _query_int(request, "limit", 1000, 1, 10_000)
    return web.json_response(await request.app[SERVICE].events(since, limit))


async def start_session(request: web.Request) -> web.Response:
    body = parse_body(StartSessionBody, await request.read())
    session = await request.app[SERVICE].start_session(
        charger_id=body.charger_id,
        connector_id=body.connector_id,
        vehicle_max_power=body.vehicle_max_power,
    )
    return web.json_response(session_view(session), status=201)


async def stop_session(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session_id = request.match_info["session_id"]
    await service.check_session(session_id)  # 404 before judging the body
    body = parse_body(StopSessionBody, await request.read(), empty_ok=True)
    session = await service.stop_session(session_id, consumed_energy=body.consumed_energy)
    return web.json_response(session_view(session))


async def power_update(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session_id = request.match_info["session_id"]
    await service.check_session(session_id)
    body = parse_body(PowerUpdateBody, await request.read())
    session = await service.update_session(
        session_id,
        consumed_power=body.consumed_power,
        vehicle_max_power=body.vehicle_max_power,
    )
    return web.json_response(session_view(session))


DASHBOARD = resources.files("controller").joinpath("static/dashboard.html")


async def dashboard(request: web.Request) -> web.Response:
    """A live page for the operator: it polls /station/status every second."""
    return web.Response(text=DASHBOARD.read_text(encoding="utf-8"), content_type="text/html")


def create_app(service: StationService) -> web.Application:
    # A request body above 1 MiB is refused by aiohttp with a 413 before it reaches us.
    app = web.Application(middlewares=[json_errors], client_max_size=1024 * 1024)
    app[SERVICE] = service
    app.router.add_get("/", dashboard)
    app.router.add_get("/station/status", station_status)
    app.router.add_get("/station/events", station_events)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_post("/sessions", start_session)
    app.router.add_get("/sessions/{session_id}", get_session)
    app.router.add_post("/sessions/{session_id}/stop", stop_session)
    app.router.add_post("/sessions/{session_id}/power-update", power_update)
    return app
