"""aiohttp REST API on port 4567 (docs/api.md).

The four endpoints of the original system keep their paths and bodies; the
session and status JSON are in ``controller.views``. Every error is JSON with
``error``, ``message`` and ``details``; a middleware turns aiohttp's own
404/405 into that shape and any unexpected exception into a bare 500 without
internals (which the tests make sure never happens for client input). Who may
use which route is declared in :func:`routes` and enforced by
``controller.rest_auth`` before any handler runs (docs/security-rest.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from controller.config import ApiConfig
from controller.core.commands import Answer, Refusal, SessionAnswer, Unavailable
from controller.core.events import (
    SessionStartRequested,
    SessionStopRequested,
    SessionUpdateRequested,
)
from controller.core.sessions import (
    ConnectorBusy,
    InvalidConnector,
    Session,
    SessionAlreadyStopped,
    StationError,
    UnknownCharger,
    UnknownSession,
)
from controller.driver import Driver
from controller.metrics import CONTENT_TYPE
from controller.repository import StoreError
from controller.rest_auth import Access, Handler, error_response, guard, response_headers
from controller.rest_schemas import (
    ApiError,
    PowerUpdateBody,
    StartSessionBody,
    StopSessionBody,
    parse_body,
)
from controller.stream import station_stream
from controller.views import finite_dumps, session_view, status_view

log = logging.getLogger(__name__)

# Every JSON answer: never NaN or Infinity (controller.views.finite_dumps).
json_response = functools.partial(web.json_response, dumps=finite_dumps)

DRIVER = web.AppKey("driver", Driver)
API = web.AppKey("api", ApiConfig)
SessionIds = Callable[[], str]
NEW_SESSION_ID: web.AppKey[SessionIds] = web.AppKey("new_session_id")

_STATUS_FOR: dict[type[StationError], int] = {
    UnknownCharger: 404,
    UnknownSession: 404,
    InvalidConnector: 400,
    ConnectorBusy: 409,
    SessionAlreadyStopped: 409,
}

STORAGE_UNAVAILABLE = ApiError(
    503, "storage_unavailable", "the change could not be stored; nothing changed, retry later"
)


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
        return error_response(error)
    except StationError as error:
        return error_response(_station_error(error))
    except StoreError:
        log.exception("cannot read the database")
        return error_response(
            ApiError(503, "storage_unavailable", "the database cannot be read; retry later")
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status, "http_error")
        body = ApiError(error.status, code, error.reason).body()
        return json_response(body, status=error.status, headers=_allow_header(error))
    except Exception:
        # Never echo internals to a client; the log keeps the traceback.
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response(ApiError(500, "internal_error", "internal error").body(), status=500)


def _allow_header(error: web.HTTPException) -> dict[str, str]:
    allow = error.headers.get("Allow")
    return {} if allow is None else {"Allow": allow}


async def station_status(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    driver.tick()  # the battery and the limits as of now
    return json_response(status_view(driver.core))


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus page (docs/metrics.md), the station as of now like the status."""
    driver = request.app[DRIVER]
    driver.tick()
    return web.Response(body=driver.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


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
    """Active sessions from the core; the history from the database, newest first."""
    wanted = request.query.get("status")
    if wanted not in (None, "active", "stopped"):
        raise ApiError(
            400,
            "invalid_field",
            "status: must be one of 'active' or 'stopped'",
            [{"field": "status", "message": "must be one of 'active' or 'stopped'"}],
        )
    limit = _query_int(request, "limit", 1000, 1, 100_000)
    driver = request.app[DRIVER]
    views = []
    if wanted in (None, "active"):
        views += [session_view(s) for s in driver.core.active_sessions()]
    if wanted in (None, "stopped"):
        repository = driver.writer.repository
        history = await driver.writer.read(lambda: repository.stopped_sessions(limit))
        views += [session_view(s) for s in history]
    return json_response(views)


async def _stored_session(driver: Driver, session_id: str) -> Session | None:
    repository = driver.writer.repository
    return await driver.writer.read(lambda: repository.session(session_id))


async def get_session(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    session_id = request.match_info["session_id"]
    session = driver.core.session(session_id) or await _stored_session(driver, session_id)
    if session is None:
        raise UnknownSession(f"no session {session_id!r}", field="sessionId")
    return json_response(session_view(session))


async def station_events(request: web.Request) -> web.Response:
    since = _query_int(request, "since", 0, 0, 2**62)
    limit = _query_int(request, "limit", 1000, 1, 10_000)
    driver = request.app[DRIVER]
    await driver.flush()  # what was journaled a moment ago is in the answer too
    repository = driver.writer.repository
    lines = await driver.writer.read(lambda: repository.journal(since, limit))
    return json_response(
        [
            {
                "seq": line.seq,
                "at": line.entry.at,
                "kind": line.entry.kind,
                "chargerId": line.entry.charger_id,
                "sessionId": line.entry.session_id,
                "data": line.entry.data,
            }
            for line in lines
        ]
    )


async def _session_answer(driver: Driver, answer: Answer, session_id: str | None = None) -> Session:
    """The session an answer carries, or the error it means."""
    match answer:
        case SessionAnswer(session=session):
            return session
        case Refusal(error=UnknownSession()) if session_id is not None:
            if await _stored_session(driver, session_id) is not None:
                raise SessionAlreadyStopped(f"session {session_id!r} is already stopped")
            raise answer.error
        case Refusal(error=error):
            raise error
        case Unavailable():
            raise STORAGE_UNAVAILABLE
    raise ApiError(500, "internal_error", "internal error")


async def _check_session(driver: Driver, session_id: str) -> None:
    """404 for an id that never existed, before a request body is judged."""
    if driver.core.session(session_id) is None and (
        await _stored_session(driver, session_id) is None
    ):
        raise UnknownSession(f"no session {session_id!r}", field="sessionId")


async def start_session(request: web.Request) -> web.Response:
    body = parse_body(StartSessionBody, await request.read())
    driver = request.app[DRIVER]
    new_id = request.app[NEW_SESSION_ID]()
    answer = await driver.request(
        lambda reply_to: SessionStartRequested(
            driver.now(),
            reply_to,
            body.charger_id,
            body.connector_id,
            body.vehicle_max_power,
            new_id,
        )
    )
    session = await _session_answer(driver, answer)
    return json_response(session_view(session), status=201)


async def stop_session(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    session_id = request.match_info["session_id"]
    await _check_session(driver, session_id)
    body = parse_body(StopSessionBody, await request.read(), empty_ok=True)
    answer = await driver.request(
        lambda reply_to: SessionStopRequested(
            driver.now(), reply_to, session_id, body.consumed_energy
        )
    )
    session = await _session_answer(driver, answer, session_id)
    return json_response(session_view(session))


async def power_update(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    session_id = request.match_info["session_id"]
    await _check_session(driver, session_id)
    body = parse_body(PowerUpdateBody, await request.read())
    answer = await driver.request(
        lambda reply_to: SessionUpdateRequested(
            driver.now(),
            reply_to,
            session_id,
            consumed_power=body.consumed_power,
            vehicle_max_power=body.vehicle_max_power,
        )
    )
    session = await _session_answer(driver, answer, session_id)
    return json_response(session_view(session))


async def healthz(request: web.Request) -> web.Response:
    """200 when the event loop (it runs this) and the database (a trivial read on the
    repository's thread, behind any write in progress) answer within the health timeout."""
    driver = request.app[DRIVER]
    repository = driver.writer.repository
    try:
        async with asyncio.timeout(request.app[API].health_timeout):
            await driver.writer.read(lambda: repository.schema_version)
    except Exception as error:
        log.warning("health check: the database does not answer (%s)", type(error).__name__)
        raise ApiError(503, "unhealthy", "the database does not answer") from None
    return json_response({"status": "ok"})


def static_file(name: str, content_type: str) -> Handler:
    """A file of the dashboard, from the package, read once."""
    body = resources.files("controller").joinpath(f"static/{name}").read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return serve


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    access: Access
    handler: Handler


def routes() -> tuple[Route, ...]:
    """Every route and who may use it (docs/security-rest.md). A GET also answers HEAD."""
    return (
        # The dashboard's own files hold no data: the page asks for a token when it needs one.
        Route("GET", "/", Access.OPEN, static_file("dashboard.html", "text/html")),
        Route("GET", "/dashboard.js", Access.OPEN, static_file("dashboard.js", "text/javascript")),
        Route("GET", "/dashboard.css", Access.OPEN, static_file("dashboard.css", "text/css")),
        Route("GET", "/dashboard.svg", Access.OPEN, static_file("dashboard.svg", "image/svg+xml")),
        Route("GET", "/healthz", Access.OPEN, healthz),
        Route("GET", "/station/status", Access.READ, station_status),
        Route("GET", "/station/stream", Access.READ, station_stream),
        Route("GET", "/station/events", Access.READ, station_events),
        Route("GET", "/metrics", Access.READ, metrics),
        Route("GET", "/sessions", Access.READ, list_sessions),
        Route("POST", "/sessions", Access.OPERATE, start_session),
        Route("GET", "/sessions/{session_id}", Access.READ, get_session),
        Route("POST", "/sessions/{session_id}/stop", Access.OPERATE, stop_session),
        Route("POST", "/sessions/{session_id}/power-update", Access.OPERATE, power_update),
    )


def create_app(driver: Driver, new_session_id: Callable[[], str]) -> web.Application:
    api = driver.core.config.api
    table = routes()
    rules = {(r.method, r.path): r.access for r in table}
    app = web.Application(
        # Counted outermost, with the status the client got; json_errors next: whatever the
        # guard or a handler raises becomes JSON.
        middlewares=[driver.metrics.http_middleware(), json_errors, guard(api, rules, driver.now)],
        # A request body above 1 MiB is refused by aiohttp with a 413 before it reaches us.
        client_max_size=1024 * 1024,
        # aiohttp's own last-resort 500 page shows a traceback when the loop is in debug
        # mode: never to a client.
        handler_args={"debug": False},
    )
    app.on_response_prepare.append(response_headers(api))
    app[DRIVER] = driver
    app[API] = api
    app[NEW_SESSION_ID] = new_session_id
    for route in table:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)  # and HEAD
        else:
            app.router.add_route(route.method, route.path, route.handler)
    return app
