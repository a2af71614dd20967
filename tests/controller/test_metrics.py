"""GET /metrics (docs/metrics.md) over a real controller: REST and OCPP traffic, then the page
parsed with prometheus_client's own parser and compared with /station/status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.app import ControllerApp
from controller.config import config_from_dict
from controller.rest_auth import token_sha256
from protocol.messages import HeartbeatRequest, MeterValue, MeterValuesRequest, SampledValue
from tests.controller.conftest import ac_station, example_config
from tests.controller.test_ocpp_messages import booted, start_tx

T0 = "2025-01-01T00:00:00Z"
READ_TOKEN = "metrics-read-token-0123456789abcdefghijklmnopqrstuvwxyz"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Http:
    """A real HTTP client: status and text of every answer."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, str, str]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.base + path, data=data, headers=headers
        ) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, text = await self.call(method, path, body)
        return status, json.loads(text)

    async def metrics(self, token: str | None = None) -> Samples:
        status, content_type, text = await self.call("GET", "/metrics", token=token)
        assert status == 200, text
        assert content_type.startswith("text/plain; version=0.0.4")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture
async def http() -> AsyncIterator[Callable[[ControllerApp], Http]]:
    sessions: list[aiohttp.ClientSession] = []

    def client(app: ControllerApp) -> Http:
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Http(session, f"http://127.0.0.1:{app.rest_port}")

    yield client
    for session in sessions:
        await session.close()


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_agree_with_the_status_and_count_what_happened(
    start_controller: Callable[..., Any], http: Callable[[ControllerApp], Http]
) -> None:
    app: ControllerApp = await start_controller()
    api = http(app)
    # Two sessions over REST (one stopped again), one over OCPP with a meter reading.
    started = []
    for charger_id in ("CP002", "CP003"):
        status, session = await api.json(
            "POST", "/sessions", {"chargerId": charger_id, "connectorId": 0, "vehicleMaxPower": 50}
        )
        assert status == 201
        started.append(session["sessionId"])
    assert (await api.json("POST", f"/sessions/{started[1]}/stop"))[0] == 200
    assert (await api.json("GET", f"/sessions/{started[0]}"))[0] == 200
    assert (await api.json("GET", "/no/such/path"))[0] == 404
    charger = await booted(app)
    tx = await start_tx(charger, 1)
    reading = SampledValue(value="20000", measurand="Power.Active.Import", unit="W")
    await charger.call(
        MeterValuesRequest(
            connector_id=1,
            transaction_id=tx,
            meter_value=[MeterValue(timestamp=T0, sampled_value=[reading])],
        )
    )
    await app.wait_settled()  # every profile sent is answered

    samples = await api.metrics()
    status, view = await api.json("GET", "/station/status")
    assert status == 200

    # Every gauge is its status field.
    assert value(samples, "evc_grid_power_kw") == view["gridPower"]
    assert value(samples, "evc_allocated_power_kw") == view["allocatedPower"]
    assert value(samples, "evc_available_power_kw") == view["availablePower"]
    assert value(samples, "evc_grid_capacity_kw") == view["gridCapacity"] == 400
    assert value(samples, "evc_battery_energy_kwh") == view["battery"]["storedEnergy"]
    assert value(samples, "evc_battery_power_kw") == view["battery"]["currentPower"]
    assert value(samples, "evc_sessions_active") == len(view["sessions"]) == 2
    assert value(samples, "evc_chargers_connected") == 1
    for charger_view in view["chargers"]:
        name = charger_view["id"]
        assert value(samples, "evc_charger_connected", charger=name) == charger_view["connected"]
        confirmed = value(samples, "evc_charger_limits_confirmed", charger=name)
        assert confirmed == charger_view["limitsConfirmed"]
    assert value(samples, "evc_charger_connected", charger="CP001") == 1
    assert value(samples, "evc_charger_limits_confirmed", charger="CP001") == 1
    assert view["allocatedPower"] > 0

    # The counters count what the test did.
    assert value(samples, "evc_sessions_started_total", origin="rest") == 2
    assert value(samples, "evc_sessions_started_total", origin="ocpp") == 1
    for action in ("BootNotification", "StartTransaction", "MeterValues"):
        assert value(samples, "evc_ocpp_messages_total", action=action, direction="in") == 1
    sent = value(samples, "evc_ocpp_messages_total", action="SetChargingProfile", direction="out")
    assert sent >= 2  # the failsafe default, then the transaction's limit
    accepted = [
        value(samples, "evc_profiles_sent_total", purpose=purpose, result="accepted")
        for purpose in ("TxDefaultProfile", "TxProfile")
    ]
    assert all(count >= 1 for count in accepted)
    assert sum(accepted) == sent
    requests = {
        ("POST", "/sessions", "201"): 2,
        ("POST", "/sessions/{session_id}/stop", "200"): 1,
        ("GET", "/sessions/{session_id}", "200"): 1,
        ("GET", "other", "404"): 1,
    }
    for (method, route, code), count in requests.items():
        found = value(samples, "evc_http_requests_total", method=method, route=route, status=code)
        assert found == count
    assert value(samples, "evc_allocation_seconds_count") >= 1
    assert value(samples, "evc_commit_seconds_count") >= 1
    assert value(samples, "evc_allocation_seconds_sum") > 0
    # The scrape itself is counted once it is answered: by the next scrape.
    again = await api.metrics()
    scrapes = value(again, "evc_http_requests_total", method="GET", route="/metrics", status="200")
    assert scrapes == 1
    await charger.close()


async def test_ocpp_label_values_are_bounded_and_callerrors_counted(
    start_controller: Callable[..., Any], http: Callable[[ControllerApp], Http]
) -> None:
    app: ControllerApp = await start_controller()
    api = http(app)
    charger = await booted(app)
    # An action OCPP 1.6 does not define, then a known one with a payload that is not valid.
    await charger.send_raw('[2,"u1","MadeUpAction",{}]')
    await charger.send_raw('[2,"u2","Heartbeat",{"surplus":1}]')
    # Answers leave in the order the CALLs came: this one's answer comes after theirs.
    await charger.call(HeartbeatRequest())
    samples = await api.metrics()
    assert value(samples, "evc_ocpp_messages_total", action="other", direction="in") == 1
    assert value(samples, "evc_ocpp_messages_total", action="Heartbeat", direction="in") == 2
    assert (
        "evc_ocpp_messages_total",
        frozenset({("action", "MadeUpAction"), ("direction", "in")}),
    ) not in samples
    errors = {
        name[1]: count for name, count in samples.items() if name[0] == "evc_ocpp_callerrors_total"
    }
    assert sum(errors.values()) == 2
    assert all(dict(labels)["direction"] == "out" for labels in errors)
    codes = {dict(labels)["code"] for labels in errors}
    assert "NotImplemented" in codes
    await charger.close()


async def test_metrics_need_a_read_token_when_tokens_are_configured(
    start_controller: Callable[..., Any], http: Callable[[ControllerApp], Http]
) -> None:
    tokens = [{"name": "monitor", "role": "read", "sha256": token_sha256(READ_TOKEN)}]
    app: ControllerApp = await start_controller(example_config(api={"tokens": tokens}))
    api = http(app)
    assert (await api.call("GET", "/metrics"))[0] == 401
    samples = await api.metrics(token=READ_TOKEN)
    assert value(samples, "evc_sessions_active") == 0
    # The refused request was counted, with the status its client got.
    refused = value(
        samples, "evc_http_requests_total", method="GET", route="/metrics", status="401"
    )
    assert refused == 1


async def test_phase_bookings_and_paused_sessions_with_the_electrical_model(
    start_controller: Any, http: Callable[[ControllerApp], Http]
) -> None:
    """10 A per phase fit one 3-phase car at 6 A: the second waits (docs/electrical.md)."""
    app: ControllerApp = await start_controller(config_from_dict(ac_station(2, 10)))
    client = http(app)
    before = await client.metrics()
    assert ("evc_sessions_paused", frozenset()) in before
    for i in range(2):
        status, _ = await client.json(
            "POST", "/sessions", {"chargerId": f"AC{i}", "connectorId": 0}
        )
        assert status == 201
    samples = await client.metrics()
    assert value(samples, "evc_sessions_paused") == 1
    for phase in ("L1", "L2", "L3"):
        assert value(samples, "evc_phase_booked_current_amps", phase=phase) == 10
    _, status_body = await client.json("GET", "/station/status")
    assert [p["bookedCurrent"] for p in status_body["phases"]] == [10, 10, 10]
