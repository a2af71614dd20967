"""The dashboard in a real browser (docs/dashboard.md): Debian's chromium driven by Playwright,
against the controller started in-process. One browser for the module; a fresh page and a
fresh controller per test. Every page's console must stay free of errors."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from controller.app import ControllerApp
from controller.config import StationConfig, config_from_dict
from controller.rest_auth import token_sha256
from protocol.messages import (
    BootNotificationRequest,
    StartTransactionRequest,
    StopTransactionRequest,
)
from shell.clock import ManualClock
from tests.controller.conftest import ac_station, example_config, ocpp_url
from tests.controller.ocpp_client import FakeCharger

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# How soon the page must show a change once the controller acknowledged it (ms).
FOLLOW_MS = 1000
WAIT = 10.0

pytestmark = pytest.mark.asyncio(loop_scope="module")

READ_TOKEN = "dashboard-read-token-0123456789abcdefghijklmnop"
OPERATE_TOKEN = "dashboard-operate-token-0123456789abcdefghijklmnop"
UNKNOWN_TOKEN = "dashboard-unknown-token-0123456789abcdefghijklmnop"
# OCPP allows 20 characters for each: an element that would load something, and one that
# would run script.
VENDOR = "<i>V</i><img src=x>"
MODEL = "<svg onload=alert()>"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        reason = f"{CHROMIUM} is missing (Debian package 'chromium')"
        if os.environ.get("EVC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EVC_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        await launched.close()


@dataclass
class Tab:
    """A page and what its console said; ``expected`` are error texts the test provokes."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    expected: tuple[str, ...] = ()

    async def open(self, app: ControllerApp) -> None:
        await self.page.goto(f"http://127.0.0.1:{app.rest_port}/")

    async def until(self, script: str, arg: Any = None, timeout_ms: float = WAIT * 1000) -> None:
        await self.page.wait_for_function(script, arg=arg, timeout=timeout_ms)

    async def live(self) -> None:
        await self.until("document.getElementById('link').textContent === 'live'")

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(x in e for x in self.expected)]


@pytest_asyncio.fixture(loop_scope="module")
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    context = await browser.new_context()
    page = await context.new_page()
    opened = Tab(page)
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(f"page error: {e}"))

    async def dismiss(dialog: Any) -> None:
        opened.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    yield opened
    await context.close()
    assert opened.unexpected_errors() == [], "errors in the browser console"


@pytest_asyncio.fixture(loop_scope="module")
async def controller(clock: ManualClock, db_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start the controller on free loopback ports (as tests/controller/conftest.py does, on
    this module's event loop)."""
    apps: list[ControllerApp] = []

    async def start(config: StationConfig | None = None, rest_port: int = 0) -> ControllerApp:
        app = ControllerApp(
            config or example_config(),
            clock=clock,
            host="127.0.0.1",
            rest_port=rest_port,
            ocpp_port=0,
            db_path=db_path,
        )
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, app: ControllerApp, path: str, body: Any = None, token: str = ""
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{app.rest_port}{path}"
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


SESSION_ROW = "id => document.querySelector(`#sessions tr[data-session-id='${id}']`)"
NO_SESSION_ROW = "id => !document.querySelector(`#sessions tr[data-session-id='${id}']`)"


async def test_the_page_follows_sessions_started_and_stopped_over_rest_and_ocpp(
    controller: Callable[..., Any], tab: Tab, http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await controller()
    await tab.open(app)
    await tab.live()
    # REST
    status, session = await post(
        http, app, "/sessions", {"chargerId": "CP001", "connectorId": 0, "vehicleMaxPower": 50}
    )
    assert status == 201
    # With its limit and what bounded it (a moment before, the row may show the session as
    # it was before its first allocation, at 0 kW).
    await tab.until(
        f"id => (r => r && r.cells[3].textContent === '50' && r.cells[4].textContent === "
        f"'vehicle')(({SESSION_ROW})(id))",
        session["sessionId"],
        FOLLOW_MS,
    )
    status, _ = await post(http, app, f"/sessions/{session['sessionId']}/stop")
    assert status == 200
    await tab.until(NO_SESSION_ROW, session["sessionId"], FOLLOW_MS)
    # OCPP
    charger = FakeCharger(ocpp_url(app), "CP002")
    await charger.connect()
    try:
        await charger.boot()
        started = await charger.call(
            StartTransactionRequest(
                connector_id=1, id_tag="TAG", meter_start=0, timestamp="2026-01-01T00:00:00Z"
            )
        )
        transaction_id = started.transaction_id
        ocpp_session = app.core.session_by_transaction(transaction_id)
        assert ocpp_session is not None
        await tab.until(SESSION_ROW, ocpp_session.session_id, FOLLOW_MS)
        await tab.until(
            "() => [...document.querySelectorAll('#chargers tr')].some("
            "r => r.cells[0].textContent.startsWith('CP002') && r.cells[1].textContent === "
            "'connected')",
            None,
            FOLLOW_MS,
        )
        await charger.call(
            StopTransactionRequest(
                transaction_id=transaction_id, meter_stop=1000, timestamp="2026-01-01T00:10:00Z"
            )
        )
        await tab.until(NO_SESSION_ROW, ocpp_session.session_id, FOLLOW_MS)
    finally:
        await charger.close()


async def test_the_chart_is_drawn_from_the_history_and_the_live_events(
    controller: Callable[..., Any], tab: Tab, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    app: ControllerApp = await controller()
    # Ten minutes of history: a session whose reported power changes every minute.
    _, session = await post(
        http, app, "/sessions", {"chargerId": "CP003", "connectorId": 0, "vehicleMaxPower": 300}
    )
    update = f"/sessions/{session['sessionId']}/power-update"
    for minute in range(10):
        clock.advance(60)
        await post(http, app, update, {"consumedPower": 40 * minute})
    assert len(app.history.samples()) == 11
    await tab.open(app)
    await tab.live()
    points = await tab.page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#chart path')].map("
        "p => [p.getAttribute('class'), p.getAttribute('d').split(/[MHVL]/).length - 1]))"
    )
    assert set(points) == {"grid-area", "grid", "capacity", "allocated", "battery"}
    assert points["grid"] > 20  # a step per sample
    assert points["battery"] >= 11
    # A live change is drawn too, without reloading.
    grid = tab.page.locator("#chart path.grid")
    before = await grid.get_attribute("d")
    status, _ = await post(http, app, update, {"consumedPower": 100})
    assert status == 200
    await tab.until(
        "d => document.querySelector('#chart path.grid').getAttribute('d') !== d",
        before,
        FOLLOW_MS,
    )
    labels = await tab.page.locator("#chart text").all_text_contents()
    assert "now" in labels
    assert "\u221260 min" in labels  # a minus sign


async def test_a_vendor_string_with_markup_shows_as_text(
    controller: Callable[..., Any], tab: Tab
) -> None:
    app: ControllerApp = await controller()
    await tab.open(app)
    await tab.live()
    charger = FakeCharger(ocpp_url(app), "CP001")
    await charger.connect()
    try:
        await charger.call(
            BootNotificationRequest(charge_point_vendor=VENDOR, charge_point_model=MODEL)
        )
        await tab.until(
            "m => document.getElementById('chargers').textContent.includes(m)",
            f"{VENDOR} · {MODEL}",
            FOLLOW_MS,
        )
    finally:
        await charger.close()
    for tag in ("img", "i", "svg"):
        assert await tab.page.locator(f"#chargers {tag}").count() == 0
    assert tab.dialogs == []  # no alert ran


async def test_the_stop_button_asks_for_an_operate_token_and_stops_the_session(
    controller: Callable[..., Any], tab: Tab, http: aiohttp.ClientSession
) -> None:
    tokens = [
        {"name": "wall", "role": "read", "sha256": token_sha256(READ_TOKEN)},
        {"name": "operator", "role": "operate", "sha256": token_sha256(OPERATE_TOKEN)},
    ]
    app: ControllerApp = await controller(example_config(api={"tokens": tokens}))
    # The browser logs each refused request; these the test provokes (the stream without a
    # token and with an unknown one, the stop with a read token).
    tab.expected = ("status of 401", "status of 403")
    await tab.open(app)
    form, note = tab.page.locator("#login"), tab.page.locator("#login-note")
    await form.wait_for(state="visible", timeout=WAIT * 1000)
    assert "needs an API token" in (await note.text_content() or "")
    await tab.page.fill("#token", UNKNOWN_TOKEN)
    await tab.page.click("#login button[type=submit]")
    await tab.until("() => document.getElementById('login-note').textContent.includes('not')")
    assert "not accepted" in (await note.text_content() or "")
    await tab.page.fill("#token", READ_TOKEN)
    await tab.page.click("#login button[type=submit]")
    await tab.live()
    status, session = await post(
        http, app, "/sessions", {"chargerId": "CP001", "connectorId": 0}, OPERATE_TOKEN
    )
    assert status == 201
    session_id = session["sessionId"]
    await tab.until(SESSION_ROW, session_id, FOLLOW_MS)
    await tab.page.click(f"#sessions tr[data-session-id='{session_id}'] button")
    await form.wait_for(state="visible", timeout=WAIT * 1000)
    assert "operate" in (await tab.page.locator("#login-note").text_content() or "")
    assert app.core.session(session_id) is not None  # a read token stops nothing
    await tab.page.fill("#token", OPERATE_TOKEN)
    await tab.page.click("#login button[type=submit]")
    await tab.until(NO_SESSION_ROW, session_id)
    assert app.core.session(session_id) is None
    history = await asyncio.wait_for(
        app.driver.writer.read(lambda: app.repository.session(session_id)), WAIT
    )
    assert history is not None and history.stopped_at is not None
    # Kept for this tab only, never in a cookie.
    stored = await tab.page.evaluate("() => Object.entries(sessionStorage)")
    assert stored == [["ev-controller-token", OPERATE_TOKEN]]
    assert await tab.page.evaluate("() => document.cookie") == ""
    assert [e for e in tab.errors if "status of" in e]  # the refusals were real


async def test_the_page_reconnects_when_its_stream_drops(
    controller: Callable[..., Any], tab: Tab, http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await controller()
    # A retry that finds the port closed (the restart below not yet listening) is logged.
    tab.expected = ("ERR_CONNECTION_REFUSED",)
    await tab.open(app)
    await tab.live()
    port = app.rest_port
    await app.stop()  # ends the stream
    await tab.until("() => document.getElementById('link').textContent !== 'live'")
    restarted: ControllerApp = await controller(rest_port=port)
    status, session = await post(
        http, restarted, "/sessions", {"chargerId": "CP002", "connectorId": 1}
    )
    assert status == 201
    # The first retry comes after 1 s, the next 2 s later.
    await tab.until(SESSION_ROW, session["sessionId"], 5000)
    await tab.live()


async def test_the_site_meter_and_an_external_limit_show_on_the_page(
    controller: Callable[..., Any], tab: Tab, http: aiohttp.ClientSession
) -> None:
    """docs/site.md: the meter's reading and what it leaves for charging, and a limit set
    from outside, appear as they are set, without a reload."""
    config = example_config(site={"meter": {"type": "push"}, "margin": 5})
    app: ControllerApp = await controller(config)
    await tab.open(app)
    await tab.live()
    await tab.until("() => document.getElementById('site-meter')?.textContent.includes('stale')")
    status, meter = await post(http, app, "/station/site-meter", {"power": 41.5})
    assert status == 200, meter
    await tab.until(
        "() => document.getElementById('site-meter')?.textContent.includes('41.5 / 400 kW')",
        timeout_ms=FOLLOW_MS,
    )
    url = f"http://127.0.0.1:{app.rest_port}/station/limit"
    body = {"maxPower": 120, "reason": "DSO <b>curtailment</b>"}
    async with http.put(url, json=body) as response:
        assert response.status == 200
    await tab.until(
        "r => document.getElementById('external-limit')?.textContent.includes(r)",
        body["reason"],
        FOLLOW_MS,
    )
    assert await tab.page.locator("#external-limit b b").count() == 0  # the reason is text
    async with http.delete(url) as response:
        assert response.status == 200
    await tab.until("() => !document.getElementById('external-limit')", timeout_ms=FOLLOW_MS)


async def test_a_paused_session_and_the_phase_bookings_show_with_the_electrical_model(
    controller: Callable[..., Any], tab: Tab, http: aiohttp.ClientSession
) -> None:
    """docs/electrical.md: 10 A per phase fit one 3-phase car at its 6 A minimum; the
    second waits, and the page says since when, with each site phase's booked current."""
    config = config_from_dict(ac_station(2, 10))
    app: ControllerApp = await controller(config)
    await tab.open(app)
    await tab.live()
    for i in range(2):
        status, _ = await post(http, app, "/sessions", {"chargerId": f"AC{i}", "connectorId": 0})
        assert status == 201
    await tab.until(
        "() => document.getElementById('sessions').textContent.includes('paused since')",
        timeout_ms=FOLLOW_MS,
    )
    running = await tab.page.locator("#sessions").inner_text()
    assert "10 A \u00d7 3" in running  # the running car has the whole 10 A on its three phases
    await tab.until(
        "() => document.getElementById('phases')?.textContent.includes('L1 10')",
        timeout_ms=FOLLOW_MS,
    )


async def test_the_api_page_renders_the_document_from_the_controller_alone(
    controller: Callable[..., Any], tab: Tab
) -> None:
    app: ControllerApp = await controller()
    hosts: set[str] = set()
    tab.page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    await tab.page.goto(f"http://127.0.0.1:{app.rest_port}/docs")
    await tab.until("() => document.querySelectorAll('section.op').length > 10")
    text = await tab.page.locator("#postSessions").inner_text()
    assert "StartSessionBody" in text and "409" in text
    assert hosts == {f"127.0.0.1:{app.rest_port}"}  # nothing fetched from anywhere else
