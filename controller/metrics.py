"""What ``GET /metrics`` shows, in the Prometheus text format (docs/metrics.md).

One :class:`Metrics` per controller, on a registry of its own (never the library's global
one: tests run many controllers in one process). Two kinds of numbers:

* What the station is now (grid, battery, sessions, chargers) is not kept here: a collector
  reads it from the core when the page is made, through the same ``status_view`` as
  ``GET /station/status``, so the two agree when taken at the same moment.
* What happened (messages, errors, profiles, requests) is counted where it happens, by one
  call each from the driver, the writer, the OCPP server and the REST app; the sessions
  started are counted by the core itself, where a committed start is applied.

Every label value that comes from outside is bounded, so that a client cannot make the page
grow without end: an OCPP action that 1.6 does not define, an error code it does not define,
an HTTP method we do not serve and a path no route matches are all ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.core.events import ProfileResult
from controller.core.sessions import Origin
from controller.core.station import StationCore
from controller.rest_auth import Handler
from controller.views import status_view
from protocol import (
    CallAnswered,
    CallCancelled,
    CallErrored,
    CallReceived,
    CallRejected,
    CallTimedOut,
    Event,
    OcppError,
)
from protocol.errors import ERROR_CLASSES
from protocol.messages import SetChargingProfileRequest
from protocol.registry import ACTIONS

# The label value of whatever is not in a known set.
OTHER: Final = "other"
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Outcomes of a SetChargingProfile as the metric names them. An answer with a CALLERROR is a
# refusal too; a call whose connection ended with it on the wire got no answer, like a
# timeout. One that never went out was not sent, so it is not counted.
PROFILE_RESULT: Final[dict[ProfileResult, str | None]] = {
    ProfileResult.ACCEPTED: "accepted",
    ProfileResult.REJECTED: "rejected",
    ProfileResult.ERROR: "rejected",
    ProfileResult.TIMEOUT: "timeout",
    ProfileResult.LOST: "timeout",
    ProfileResult.NOT_SENT: None,
}

# A reallocation takes from tens of microseconds to tens of milliseconds (thousands of
# sessions); a commit from a millisecond to a slow disk's second.
ALLOCATION_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
COMMIT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def bounded_action(action: str | None) -> str:
    return action if action is not None and action in ACTIONS else OTHER


def bounded_code(code: str) -> str:
    return code if code in ERROR_CLASSES else OTHER


class StationCollector(Collector):
    """The station's state, read from the core when the page is made."""

    def __init__(self, core: StationCore) -> None:
        self._core = core

    def collect(self) -> Iterable[Metric]:
        core = self._core
        status = status_view(core)
        yield _gauge("evc_grid_power_kw", "Power drawn from the grid now (kW)", status["gridPower"])
        yield _gauge(
            "evc_allocated_power_kw",
            "Power allocated to the active sessions (kW)",
            status["allocatedPower"],
        )
        yield _gauge(
            "evc_available_power_kw",
            "Power the allocation may hand out: the grid plus what the battery gives (kW)",
            status["availablePower"],
        )
        yield _gauge(
            "evc_grid_capacity_kw", "The site's grid capacity (kW)", status["gridCapacity"]
        )
        battery = status["battery"]
        if battery is not None:
            yield _gauge(
                "evc_battery_energy_kwh",
                "Energy stored in the battery (kWh)",
                battery["storedEnergy"],
            )
            yield _gauge(
                "evc_battery_power_kw",
                "Battery power now (kW): positive discharging, negative charging",
                battery["currentPower"],
            )
        meter = status["siteMeter"]
        if meter is not None:
            yield _gauge(
                "evc_site_meter_ok",
                "1 while the site meter gives valid readings, 0 while it is silent",
                1 if meter["state"] == "ok" else 0,
            )
            yield _gauge(
                "evc_site_grid_share_kw",
                "kW of the grid connection left for charging by the rest of the site",
                meter["gridShare"],
            )
            if meter["lastReading"] is not None:
                yield _gauge(
                    "evc_site_power_kw",
                    "The site at the connection point, last reading (kW, import positive)",
                    meter["lastReading"],
                )
            if meter["nonChargingLoad"] is not None:
                yield _gauge(
                    "evc_site_non_charging_load_kw",
                    "The site's load other than charging, last reading (kW)",
                    meter["nonChargingLoad"],
                )
        limit = status["externalLimit"]
        if limit is not None:
            yield _gauge(
                "evc_external_limit_kw",
                "The external limit on the station while one is in force (kW)",
                limit["maxPower"],
            )
        phases = status["phases"]
        if phases is not None:
            booked = GaugeMetricFamily(
                "evc_phase_booked_current_amps",
                "Current the limits in force book on each site phase (A), electrical model",
                labels=["phase"],
            )
            for phase in phases:
                booked.add_metric([phase["phase"]], phase["bookedCurrent"])
            yield booked
            yield _gauge(
                "evc_sessions_paused",
                "Sessions waiting at 0 for room (electrical model)",
                sum(1 for s in status["sessions"] if s["paused"]),
            )
        yield _gauge("evc_sessions_active", "Active charging sessions", len(status["sessions"]))
        chargers = status["chargers"]
        yield _gauge(
            "evc_chargers_connected",
            "Chargers connected over OCPP",
            sum(1 for c in chargers if c["connected"]),
        )
        connected = GaugeMetricFamily(
            "evc_charger_connected", "1 when the charger is connected", labels=["charger"]
        )
        confirmed = GaugeMetricFamily(
            "evc_charger_limits_confirmed",
            "1 when the charger has accepted every limit it holds",
            labels=["charger"],
        )
        for charger in chargers:
            connected.add_metric([charger["id"]], 1 if charger["connected"] else 0)
            confirmed.add_metric([charger["id"]], 1 if charger["limitsConfirmed"] else 0)
        yield connected
        yield confirmed
        started = CounterMetricFamily(
            "evc_sessions_started",
            "Sessions started (acknowledged to whoever asked), by origin",
            labels=["origin"],
        )
        for origin in Origin:
            started.add_metric([origin.value], core.sessions_started[origin])
        yield started


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=0.0 if value is None else value)


class Metrics:
    def __init__(self, core: StationCore) -> None:
        self.registry = registry = CollectorRegistry()
        registry.register(StationCollector(core))
        self.ocpp_messages = Counter(
            "evc_ocpp_messages",
            "OCPP CALLs received (in) and sent (out), by action",
            ["action", "direction"],
            registry=registry,
        )
        # Its series by labels: looking one up costs a third of what ``labels()`` does, and
        # this one is counted on every message.
        self._messages: dict[tuple[str, str], Counter] = {}
        self.ocpp_callerrors = Counter(
            "evc_ocpp_callerrors",
            "OCPP CALLERRORs received (in) and sent (out), by error code",
            ["code", "direction"],
            registry=registry,
        )
        self.profiles_sent = Counter(
            "evc_profiles_sent",
            "SetChargingProfile calls sent, by purpose and outcome",
            ["purpose", "result"],
            registry=registry,
        )
        self.http_requests = Counter(
            "evc_http_requests",
            "REST requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.allocation_seconds = Histogram(
            "evc_allocation_seconds",
            "Time of one reallocation (s)",
            buckets=ALLOCATION_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "evc_commit_seconds",
            "Time of one write to the database (s)",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )

    def exposition(self) -> bytes:
        """The page, in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- OCPP ------------------------------------------------------------------------------

    def ocpp_event(self, event: Event) -> None:
        """What a charger's connection reported (every CALL of the charger's it handled, and
        the outcome of every CALL of ours)."""
        match event:
            case CallReceived(action=action):
                self._message(action, "in")
            case CallRejected(action=action, error=error):
                self._message(bounded_action(action), "in")
                self.ocpp_callerrors.labels(bounded_code(error.code), "out").inc()
            case CallErrored(action=action, error_code=code, local=local):
                self._message(action, "out")
                if not local:  # a CALLERROR on the wire, not an answer we could not use
                    self.ocpp_callerrors.labels(bounded_code(code), "in").inc()
            case CallAnswered(action=action) | CallTimedOut(action=action):
                self._message(action, "out")
            case CallCancelled(action=action, sent=True):
                self._message(action, "out")
            case _:
                pass

    def _message(self, action: str, direction: str) -> None:
        series = self._messages.get((action, direction))
        if series is None:
            series = self._messages[action, direction] = self.ocpp_messages.labels(
                action, direction
            )
        series.inc()

    def ocpp_error_sent(self, error: OcppError) -> None:
        """A CALL of the charger's answered with a CALLERROR by a handler (or refused for
        the charger's message rate)."""
        self.ocpp_callerrors.labels(bounded_code(error.code), "out").inc()

    def profile_answered(self, request: SetChargingProfileRequest, result: ProfileResult) -> None:
        label = PROFILE_RESULT[result]
        if label is not None:
            purpose = request.cs_charging_profiles.charging_profile_purpose
            self.profiles_sent.labels(str(purpose), label).inc()

    # -- HTTP ------------------------------------------------------------------------------

    def http_middleware(self) -> Middleware:
        """Counts every request that reaches the app, after the answer is made."""
        requests = self.http_requests

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as error:
                status = error.status
                raise
            finally:
                resource = request.match_info.route.resource
                route = OTHER if resource is None else resource.canonical
                method = request.method if request.method in HTTP_METHODS else OTHER
                requests.labels(method, route, str(status)).inc()

        return count
