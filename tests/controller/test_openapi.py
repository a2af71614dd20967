"""The API description (docs/api.md, "API description"): the OpenAPI document is valid, covers
every route, and a live controller answers as it says.

``schemathesis`` generates requests from the document, valid and invalid ones, and sends them
to a real controller process on loopback (a station with a battery, active and stopped
sessions and a booted charger, so that the answers carry every shape); every answer must be
documented, conform to its schema, and none may be a 5xx.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from pydantic import TypeAdapter
from schemathesis.checks import ignored_auth

from controller.app import ControllerApp
from controller.openapi import openapi_document
from controller.rest import routes
from controller.views import JournalLineView, SessionView, StatusView
from protocol.messages import BootNotificationRequest, StartTransactionRequest
from tests.controller.conftest import Api, ocpp_url
from tests.controller.ocpp_client import FakeCharger
from tests.controller.process import READY, controller_command

CONFIG = {
    "stationId": "OPENAPI",
    "gridCapacity": 400,
    "chargers": [
        {"id": "CP001", "maxPower": 200, "connectors": 2},
        {"id": "CP002", "maxPower": 200, "connectors": 2},
    ],
    "groups": [{"id": "left", "maxPower": 150, "chargers": ["CP001"]}],
    "battery": {"initialCapacity": 200, "power": 100},
}
# The live controller is run with a token, so that schemathesis also checks that each route
# refuses a request without it as the document says.
TOKEN = "schemathesis-operate-token-0123456789"
SECURED = {
    **CONFIG,
    "api": {
        "tokens": [
            {
                "name": "tests",
                "role": "operate",
                "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
            }
        ]
    },
}
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
T0 = "2026-11-30T08:00:00Z"

DOCUMENT = openapi_document(routes())
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"] == "3.1.0"


def test_the_document_describes_every_route_with_its_access() -> None:
    documented = {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
    }
    assert documented == {(route.method, route.path) for route in routes()}
    for route in routes():
        operation = DOCUMENT["paths"][route.path][route.method.lower()]
        assert route.access.value in operation["description"] or route.access.value == "open"
        assert (operation["security"] == []) == (route.access.value == "open")
        if route.access.value != "open":
            assert "401" in operation["responses"]


def test_bodies_are_described_by_the_models_that_validate_them() -> None:
    start = DOCUMENT["paths"]["/sessions"]["post"]["requestBody"]
    assert start["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StartSessionBody"
    }
    body = DOCUMENT["components"]["schemas"]["StartSessionBody"]
    assert body["required"] == ["chargerId", "connectorId"]
    assert body["additionalProperties"] is False  # an unknown key is an error
    assert body["properties"]["vehicleMaxPower"]["anyOf"][0]["exclusiveMinimum"] == 0
    stop = DOCUMENT["paths"]["/sessions/{session_id}/stop"]["post"]["requestBody"]
    assert stop["required"] is False  # an empty body keeps the energy known so far
    update = DOCUMENT["components"]["schemas"]["PowerUpdateBody"]
    assert {"required": ["consumedPower"]} in update["anyOf"]


async def test_the_controller_serves_the_document_and_its_page(api: Api) -> None:
    status, served = await api.get("/openapi.json")
    assert status == 200
    assert served == json.loads(json.dumps(DOCUMENT))
    async with api.http.get(api.base + "/docs") as response:
        assert response.status == 200
        page = await response.text()
    # The page and its script come from the package: no other host is named.
    assert 'src="docs.js"' in page
    async with api.http.get(api.base + "/docs.js") as response:
        script = await response.text()
    assert "openapi.json" in script
    assert not re.search(r"https?://", page + script)


async def test_answers_of_a_busy_station_have_the_documented_shapes(
    start_controller: Callable[..., Any],
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP002").connect()
    await charger.call(
        BootNotificationRequest(charge_point_vendor="Vendor <b>", charge_point_model="M1")
    )
    started = await charger.call(
        StartTransactionRequest(connector_id=1, id_tag="T", meter_start=0, timestamp=T0)
    )
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{app.rest_port}")
        status, rest_session = await api.post(
            "/sessions", {"chargerId": "CP001", "connectorId": 0, "vehicleMaxPower": 50}
        )
        assert status == 201
        status, _ = await api.post(f"/sessions/{rest_session['sessionId']}/stop", {})
        assert status == 200
        status, station = await api.get("/station/status")
        assert status == 200
        TypeAdapter(StatusView).validate_python(station, strict=True)
        assert station["battery"] is not None and station["sessions"]
        assert any(c["vendor"] == "Vendor <b>" for c in station["chargers"])
        status, sessions = await api.get("/sessions")
        assert {s["status"] for s in sessions} == {"active", "stopped"}
        TypeAdapter(list[SessionView]).validate_python(sessions, strict=True)
        assert started.transaction_id in {s["transactionId"] for s in sessions}
        status, events = await api.get("/station/events")
        TypeAdapter(list[JournalLineView]).validate_python(events, strict=True)
        assert {"session.started", "session.stopped", "charger.booted"} <= {
            e["kind"] for e in events
        }
    await charger.close()


# -- schemathesis against a live controller -----------------------------------------------


def _start_controller(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    (workdir / "config.json").write_text(json.dumps(SECURED))
    process = subprocess.Popen(
        controller_command(workdir / "config.json", workdir / "controller.db"),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    watchdog = threading.Timer(30, process.kill)  # a controller that never gets ready
    watchdog.start()
    ports: dict[str, int] = {}
    try:
        while len(ports) < 2:
            line = process.stderr.readline()
            assert line, "the controller exited before it was ready"
            match = READY.search(line)
            if match:
                ports[match.group(1)] = int(match.group(2))
    finally:
        watchdog.cancel()
    # Keep reading its log, so that it never blocks on a full pipe.
    threading.Thread(target=process.stderr.read, daemon=True).start()
    return process, f"http://127.0.0.1:{ports['REST API on http']}"


def _post(base: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **AUTHORIZATION},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def live_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, base = _start_controller(tmp_path_factory.mktemp("openapi"))
    try:
        # Active and stopped sessions, so that the lists and the status are not empty.
        _post(base, "/sessions", {"chargerId": "CP001", "connectorId": 0, "vehicleMaxPower": 50})
        stopped = _post(base, "/sessions", {"chargerId": "CP002", "connectorId": 1})
        _post(base, f"/sessions/{stopped['sessionId']}/stop", {"consumedEnergy": 3.5})
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


# The stream never ends: it is tested as a stream elsewhere (test_stream, the browser tests).
@schema.exclude(path="/station/stream").parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_a_live_controller_answers_as_its_document_says(
    case: schemathesis.Case[Any], live_controller: str
) -> None:
    case.call_and_validate(
        base_url=live_controller,
        headers=AUTHORIZATION,
        # Its wrong tokens would count toward this address's block (10 unknown tokens in
        # 60 s, then 429 for everything): test_rest_auth covers unknown and missing tokens,
        # and missing_required_header still checks every route's 401 here.
        excluded_checks=[ignored_auth],
        timeout=10,
    )
