"""The site over REST (docs/site.md): a pushed meter, the external limit, what the status and
the metrics show, and the limit across a SIGKILL of the controller process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.app import ControllerApp
from controller.config import config_from_dict
from shell.clock import ManualClock, iso_utc
from tests.controller.test_crash import ControllerProcess

STATION: dict[str, Any] = {
    "stationId": "OFFICE",
    "gridCapacity": 250,
    "chargers": [{"id": f"CP{i}", "maxPower": 100, "connectors": 1} for i in (1, 2, 3)],
    "site": {"meter": {"type": "push"}, "margin": 5, "holdSeconds": 10, "meterTimeout": 10},
}


class Rest:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {} if body is None else {"Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        async with self.http.request(method, self.base + path, data=data, headers=headers) as r:
            text = await r.text()
            return r.status, json.loads(text) if r.content_type == "application/json" else text


@pytest.fixture
async def rest(
    start_controller: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(data: dict[str, Any]) -> tuple[ControllerApp, Rest]:
        app: ControllerApp = await start_controller(config_from_dict(data))
        http = aiohttp.ClientSession()
        sessions.append(http)
        return app, Rest(http, f"http://127.0.0.1:{app.rest_port}")

    yield start
    for http in sessions:
        await http.close()


async def start_three(call: Rest) -> None:
    for i in (1, 2, 3):
        status, _ = await call("POST", "/sessions", {"chargerId": f"CP{i}", "connectorId": 0})
        assert status == 201


def samples(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_a_pushed_meter_sets_the_budget_and_the_status_and_metrics_show_it(
    rest: Callable[..., Any], clock: ManualClock
) -> None:
    app, call = await rest(STATION)
    await start_three(call)
    status, station = await call("GET", "/station/status")
    assert station["siteMeter"]["state"] == "stale"  # no reading yet: the fallback
    # The sessions have reported no reading: they count at their limits.
    status, meter = await call(
        "POST",
        "/station/site-meter",
        {"power": 40 + app.core.load(), "currents": [100, 101, 99.5]},
    )
    assert (status, meter["state"]) == (200, "ok")
    assert meter["nonChargingLoad"] == pytest.approx(40)
    assert meter["currents"] == [100, 101, 99.5]
    _, station = await call("GET", "/station/status")
    assert station["availablePower"] == 205
    assert station["allocatedPower"] == 205
    _, text = await call("GET", "/metrics")
    found = samples(text)
    assert found["evc_site_meter_ok"] == 1
    assert found["evc_site_non_charging_load_kw"] == pytest.approx(40)
    assert found["evc_site_grid_share_kw"] == pytest.approx(205)
    assert found["evc_available_power_kw"] == 205
    clock.advance(11)  # the meter goes silent
    _, station = await call("GET", "/station/status")
    assert station["siteMeter"]["state"] == "stale"
    _, text = await call("GET", "/metrics")
    assert samples(text)["evc_site_meter_ok"] == 0


async def test_pushed_readings_out_of_time_or_without_a_push_meter_are_refused(
    rest: Callable[..., Any], clock: ManualClock
) -> None:
    _, call = await rest(STATION)
    future = iso_utc(clock.now() + 60)
    status, error = await call("POST", "/station/site-meter", {"power": 1, "timestamp": future})
    assert (status, error["error"]) == (409, "reading_out_of_time")
    old = iso_utc(clock.now() - 60)
    status, error = await call("POST", "/station/site-meter", {"power": 1, "timestamp": old})
    assert (status, error["details"][0]["field"]) == (409, "timestamp")
    status, error = await call("POST", "/station/site-meter", {"power": -2501})
    assert (status, error["error"]) == (409, "implausible_reading")
    status, error = await call("POST", "/station/site-meter", {"power": "1"})
    assert (status, error["details"][0]["field"]) == (400, "power")
    _, without = await rest({**STATION, "site": {}})
    status, error = await without("POST", "/station/site-meter", {"power": 1})
    assert (status, error["error"]) == (409, "no_push_meter")


async def test_the_external_limit_is_set_shown_journaled_and_expires(
    rest: Callable[..., Any], clock: ManualClock
) -> None:
    _, call = await rest({**STATION, "site": {}})
    await start_three(call)
    until = iso_utc(clock.now() + 600)
    status, answer = await call(
        "PUT", "/station/limit", {"maxPower": 120, "until": until, "reason": "DSO curtailment"}
    )
    assert status == 200, answer
    limit = answer["externalLimit"]
    assert (limit["maxPower"], limit["until"], limit["setBy"]) == (120, until, "127.0.0.1")
    _, station = await call("GET", "/station/status")
    assert station["externalLimit"] == limit
    assert station["availablePower"] == 120 and station["allocatedPower"] == 120
    _, text = await call("GET", "/metrics")
    assert samples(text)["evc_external_limit_kw"] == 120
    _, events = await call("GET", "/station/events")
    set_event = [e for e in events if e["kind"] == "limit.external.set"]
    assert set_event[0]["data"]["reason"] == "DSO curtailment"
    status, error = await call(
        "PUT", "/station/limit", {"maxPower": 10, "until": iso_utc(clock.now() - 1)}
    )
    assert (status, error["error"]) == (409, "limit_over")
    status, error = await call("PUT", "/station/limit", {"maxPower": 10, "until": "tomorrow"})
    assert (status, error["details"][0]["field"]) == (400, "until")
    clock.advance(601)
    _, station = await call("GET", "/station/status")
    assert station["externalLimit"] is None and station["availablePower"] == 250
    _, events = await call("GET", "/station/events")
    assert "limit.external.expired" in [e["kind"] for e in events]
    await call("PUT", "/station/limit", {"maxPower": 50})
    status, answer = await call("DELETE", "/station/limit")
    assert (status, answer) == (200, {"externalLimit": None})
    _, station = await call("GET", "/station/status")
    assert station["availablePower"] == 250


async def test_the_external_limit_survives_a_sigkill(tmp_path: Path) -> None:
    config = {**STATION, "site": {}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    controller = ControllerProcess(tmp_path)
    await controller.start()
    until = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 3600, UTC)
    status, answer = await controller.rest(
        "PUT", "/station/limit", {"maxPower": 80, "until": until.isoformat()}
    )
    assert status == 200, answer
    controller.kill()  # acknowledged, so already committed: nothing else is waited for
    await asyncio.wait_for(controller.wait(), 15)
    again = ControllerProcess(tmp_path)
    await again.start()
    try:
        status, station = await again.rest("GET", "/station/status")
        assert station["externalLimit"]["maxPower"] == 80
        assert station["availablePower"] == 80
    finally:
        assert again.process is not None
        again.process.terminate()
        await asyncio.wait_for(again.wait(), 15)
