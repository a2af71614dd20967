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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web

from controller import openapi
from controller.config import ApiConfig
from controller.core.commands import Answer, LimitAnswer, Refusal, SessionAnswer, Unavailable
from controller.core.events import (
    ExternalLimitRequested,
    SessionStartRequested,
    SessionStopRequested,
    SessionUpdateRequested,
    SiteMeterRead,
)
from controller.core.sessions import (
    ConnectorBusy,
    InvalidConnector,
    LimitAlreadyOver,
    NoPushMeter,
    Session,
    SessionAlreadyStopped,
    StationError,
    UnknownCharger,
    UnknownSession,
)
from controller.core.site import PLAUSIBLE_FACTOR, plausible
from controller.driver import Driver
from controller.metrics import CONTENT_TYPE
from controller.repository import StoreError
from controller.rest_auth import (
    CALLER,
    Access,
    Handler,
    error_response,
    guard,
    response_headers,
)
from controller.rest_schemas import (
    ApiError,
    BodyT,
    EventsQuery,
    ExternalLimitBody,
    PowerUpdateBody,
    QueryT,
    SessionsQuery,
    SiteMeterBody,
    StartSessionBody,
    StopSessionBody,
    parse_body,
    parse_query,
)
from controller.stream import station_stream
from controller.views import (
    ExternalLimitAnswerView,
    HealthView,
    JournalLineView,
    SessionView,
    SiteMeterView,
    StatusView,
    external_limit_view,
    finite_dumps,
    session_view,
    site_meter_view,
    status_view,
)

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
    LimitAlreadyOver: 409,
    NoPushMeter: 409,
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


async def list_sessions(request: web.Request) -> web.Response:
    """Active sessions from the core; the history from the database, newest first."""
    query = request_query(request, SessionsQuery)
    driver = request.app[DRIVER]
    views = []
    if query.status in (None, "active"):
        views += [session_view(s) for s in driver.core.active_sessions()]
    if query.status in (None, "stopped"):
        repository = driver.writer.repository
        history = await driver.writer.read(lambda: repository.stopped_sessions(query.limit))
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
    query = request_query(request, EventsQuery)
    driver = request.app[DRIVER]
    await driver.flush()  # what was journaled a moment ago is in the answer too
    repository = driver.writer.repository
    lines = await driver.writer.read(lambda: repository.journal(query.since, query.limit))
    views: list[JournalLineView] = [
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
    return json_response(views)


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
    body = await request_body(request, StartSessionBody)
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
            body.phases,
        )
    )
    session = await _session_answer(driver, answer)
    return json_response(session_view(session), status=201)


async def stop_session(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    session_id = request.match_info["session_id"]
    await _check_session(driver, session_id)
    body = await request_body(request, StopSessionBody)
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
    body = await request_body(request, PowerUpdateBody)
    answer = await driver.request(
        lambda reply_to: SessionUpdateRequested(
            driver.now(),
            reply_to,
            session_id,
            consumed_power=body.consumed_power,
            vehicle_max_power=body.vehicle_max_power,
            phases=body.phases,
        )
    )
    session = await _session_answer(driver, answer, session_id)
    return json_response(session_view(session))


# -- the site (docs/site.md) -----------------------------------------------------------------

# A pushed reading may say it was taken at most this far in the future (clocks differ).
CLOCK_SKEW = 5.0


async def set_external_limit(request: web.Request) -> web.Response:
    body = await request_body(request, ExternalLimitBody)
    return await _external_limit(request, body.max_power, body.until, body.reason)


async def clear_external_limit(request: web.Request) -> web.Response:
    return await _external_limit(request, None, None, "")


async def _external_limit(
    request: web.Request, max_power: float | None, until: datetime | None, reason: str
) -> web.Response:
    driver = request.app[DRIVER]
    answer = await driver.request(
        lambda reply_to: ExternalLimitRequested(
            driver.now(),
            reply_to,
            max_power,
            None if until is None else until.timestamp(),
            reason,
            request.get(CALLER, request.remote or "unknown"),
        )
    )
    match answer:
        case LimitAnswer(limit=limit):
            view: ExternalLimitAnswerView = {"externalLimit": external_limit_view(limit)}
            return json_response(view)
        case Refusal(error=error):
            raise error
        case Unavailable():
            raise STORAGE_UNAVAILABLE
    raise ApiError(500, "internal_error", "internal error")


async def push_site_meter(request: web.Request) -> web.Response:
    driver = request.app[DRIVER]
    meter = driver.core.config.site.meter
    if meter is None or meter.type != "push":
        raise NoPushMeter('this station reads no pushed meter: set site.meter to {"type": "push"}')
    body = await request_body(request, SiteMeterBody)
    capacity = driver.core.config.grid_capacity
    if not plausible(body.power, capacity):
        message = (
            f"is beyond ±{PLAUSIBLE_FACTOR * capacity:g} kW, {PLAUSIBLE_FACTOR:g} times "
            "gridCapacity: not a reading of this site"
        )
        details = [{"field": "power", "message": message}]
        raise ApiError(409, "implausible_reading", f"power: {message}", details)
    now = driver.now()
    at = now
    if body.timestamp is not None:
        at = body.timestamp.timestamp()
        # Well-formed, but not a reading of now: refused as a conflict with the clock.
        if at > now + CLOCK_SKEW:
            raise _out_of_time("is in the future: the clocks disagree")
        if at < now - driver.core.config.site.meter_timeout:
            raise _out_of_time("is older than site.meterTimeout: the reading is stale")
        at = min(at, now)
    driver.submit(SiteMeterRead(at, body.power, body.currents))
    view = site_meter_view(driver.core)
    assert view is not None
    return json_response(view)


def _out_of_time(message: str) -> ApiError:
    details = [{"field": "timestamp", "message": message}]
    return ApiError(409, "reading_out_of_time", f"timestamp: {message}", details)


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
    health: HealthView = {"status": "ok"}
    return json_response(health)


def static_file(name: str, content_type: str) -> Handler:
    """A file of the package's ``static/`` folder (the dashboard, the API page), read once."""
    body = resources.files("controller").joinpath(f"static/{name}").read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return serve


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


# -- the route table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Success:
    """A route's successful answer: its status and the type of its JSON body (the OpenAPI
    document is generated from it), or another media type."""

    status: int
    shape: Any
    description: str
    media_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    """One route: who may use it, what it takes and answers. The OpenAPI document
    (controller.openapi) is generated from this table and the types it names; a handler
    reads its body and query through :func:`request_body` / :func:`request_query`, which
    check that it asks for the model its route declares."""

    method: str
    path: str
    access: Access
    handler: Handler
    summary: str
    success: Success
    body: type[Any] | None = None
    body_optional: bool = False
    query: type[Any] | None = None
    # Answers of this route beyond those every route of its kind has (controller.openapi).
    errors: Mapping[int, str] = field(default_factory=dict)


ROUTE = web.RequestKey("route", Route)


async def request_body(request: web.Request, model: type[BodyT]) -> BodyT:
    """The request's JSON body as its route's model, or ApiError(400) naming every bad field."""
    route = request[ROUTE]
    if route.body is not model:
        raise TypeError(f"{route.method} {route.path} declares {route.body}, not {model}")
    return parse_body(model, await request.read(), empty_ok=route.body_optional)


def request_query(request: web.Request, model: type[QueryT]) -> QueryT:
    """The request's query parameters as its route's model, or ApiError(400)."""
    route = request[ROUTE]
    if route.query is not model:
        raise TypeError(f"{route.method} {route.path} declares {route.query}, not {model}")
    return parse_query(model, request.query)


def _page(status: int, description: str, media_type: str) -> Success:
    return Success(status, None, description, media_type)


SESSION_ERRORS = {
    404: "no session, active or stopped, with that id",
    409: "the session is already stopped",
}


def routes() -> tuple[Route, ...]:
    """Every route and who may use it (docs/security-rest.md). A GET also answers HEAD."""
    html, js, css = "text/html", "text/javascript", "text/css"
    return (
        # The dashboard's and the API page's files hold no data: the dashboard asks for a
        # token when it needs one, and the API's description is no secret.
        Route(
            "GET",
            "/",
            Access.OPEN,
            static_file("dashboard.html", html),
            "The operator's live dashboard",
            _page(200, "the dashboard page", html),
        ),
        Route(
            "GET",
            "/dashboard.js",
            Access.OPEN,
            static_file("dashboard.js", js),
            "The dashboard's script",
            _page(200, "a script", js),
        ),
        Route(
            "GET",
            "/dashboard.css",
            Access.OPEN,
            static_file("dashboard.css", css),
            "The dashboard's style",
            _page(200, "a style sheet", css),
        ),
        Route(
            "GET",
            "/favicon.svg",
            Access.OPEN,
            static_file("favicon.svg", "image/svg+xml"),
            "The pages' icon",
            _page(200, "an SVG image", "image/svg+xml"),
        ),
        Route(
            "GET",
            "/openapi.json",
            Access.OPEN,
            openapi_document,
            "This document",
            Success(200, dict[str, Any], "the OpenAPI 3.1 document of every route"),
        ),
        Route(
            "GET",
            "/docs",
            Access.OPEN,
            static_file("docs.html", html),
            "A readable page of this document",
            _page(200, "the API page", html),
        ),
        Route(
            "GET",
            "/docs.js",
            Access.OPEN,
            static_file("docs.js", js),
            "The API page's script",
            _page(200, "a script", js),
        ),
        Route(
            "GET",
            "/docs.css",
            Access.OPEN,
            static_file("docs.css", css),
            "The API page's style",
            _page(200, "a style sheet", css),
        ),
        Route(
            "GET",
            "/healthz",
            Access.OPEN,
            healthz,
            "Whether the event loop and the database answer",
            Success(200, HealthView, "both answer"),
            errors={503: "the database did not answer within api.healthTimeout"},
        ),
        Route(
            "GET",
            "/station/status",
            Access.READ,
            station_status,
            "The station now: limits, battery, chargers, active sessions",
            Success(200, StatusView, "the station now"),
        ),
        Route(
            "PUT",
            "/station/limit",
            Access.OPERATE,
            set_external_limit,
            "Cap the station's power until a time, or until cleared",
            Success(200, ExternalLimitAnswerView, "the limit now in force, stored"),
            body=ExternalLimitBody,
            errors={409: "until is already past"},
        ),
        Route(
            "DELETE",
            "/station/limit",
            Access.OPERATE,
            clear_external_limit,
            "Clear the external limit",
            Success(200, ExternalLimitAnswerView, "no limit in force (externalLimit null)"),
        ),
        Route(
            "POST",
            "/station/site-meter",
            Access.OPERATE,
            push_site_meter,
            "A reading of the site's grid meter, from an integration",
            Success(200, SiteMeterView, "the meter's state and the budget after the reading"),
            body=SiteMeterBody,
            errors={
                409: "the station's site.meter is not of type push, the reading's timestamp "
                "is in the future or older than site.meterTimeout, or its power is beyond "
                "ten times gridCapacity either way"
            },
        ),
        Route(
            "GET",
            "/station/stream",
            Access.READ,
            station_stream,
            "The station live, as Server-Sent Events (docs/dashboard.md): a history event and a"
            " status event on connect, then a status event at each change (at most 5 a second)"
            " and a keep-alive comment after 15 s without one",
            _page(200, "an event stream that stays open", "text/event-stream"),
            errors={503: "too many streams are open, or the controller is stopping"},
        ),
        Route(
            "GET",
            "/station/events",
            Access.READ,
            station_events,
            "The journal, oldest first",
            Success(200, list[JournalLineView], "journal lines with a seq above since"),
            query=EventsQuery,
        ),
        Route(
            "GET",
            "/metrics",
            Access.READ,
            metrics,
            "The station for Prometheus",
            _page(200, "the Prometheus text format", "text/plain"),
        ),
        Route(
            "GET",
            "/sessions",
            Access.READ,
            list_sessions,
            "Active sessions, then stopped ones, newest stop first",
            Success(200, list[SessionView], "the sessions"),
            query=SessionsQuery,
        ),
        Route(
            "POST",
            "/sessions",
            Access.OPERATE,
            start_session,
            "Start a session on a connector",
            Success(201, SessionView, "the new session, with its limit from the new allocation"),
            body=StartSessionBody,
            errors={
                400: "a bad field, or a connector the charger does not have",
                404: "no charger with that chargerId",
                409: "the connector already has an active session",
            },
        ),
        Route(
            "GET",
            "/sessions/{session_id}",
            Access.READ,
            get_session,
            "One session, active or stopped",
            Success(200, SessionView, "the session"),
            errors={404: SESSION_ERRORS[404]},
        ),
        Route(
            "POST",
            "/sessions/{session_id}/stop",
            Access.OPERATE,
            stop_session,
            "Stop a session",
            Success(200, SessionView, "the session as stopped"),
            body=StopSessionBody,
            body_optional=True,
            errors=SESSION_ERRORS,
        ),
        Route(
            "POST",
            "/sessions/{session_id}/power-update",
            Access.OPERATE,
            power_update,
            "Report a session's power and/or change its vehicle's maximum",
            Success(200, SessionView, "the session after the reallocation"),
            body=PowerUpdateBody,
            errors=SESSION_ERRORS,
        ),
    )


def _bound(route: Route) -> Handler:
    """The route's handler, with the route at hand for request_body and request_query."""
    handler = route.handler

    async def handle(request: web.Request) -> web.StreamResponse:
        request[ROUTE] = route
        return await handler(request)

    return handle


OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


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
    app[OPENAPI] = openapi.openapi_document(table)
    for route in table:
        if route.method == "GET":
            app.router.add_get(route.path, _bound(route))  # and HEAD
        else:
            app.router.add_route(route.method, route.path, _bound(route))
    return app
