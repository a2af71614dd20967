"""History retention (docs/persistence.md, "Retention"): a real controller on a real SQLite
file and a manual clock that jumps over days."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from controller.app import ControllerApp
from controller.config import config_from_dict
from controller.core.rules import START_KEY_MEMORY
from controller.repository import Pruned
from shell.clock import ManualClock
from tests.controller.conftest import ROOT, ocpp_url
from tests.controller.ocpp_client import FakeCharger
from tests.controller.test_persistence import rest, start_request

DAY = 86_400.0


def config_keeping(days: int) -> Any:
    data = json.loads((ROOT / "config.json").read_text())
    data["database"] = {"retentionDays": days}
    return config_from_dict(data)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_stopped_sessions_and_journal_lines_go_after_the_retention_period(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller(config_keeping(30))
    code, old = await rest(app, "POST", "/sessions", {"chargerId": "CP002", "connectorId": 0})
    await rest(app, "POST", f"/sessions/{old['sessionId']}/stop", {"consumedEnergy": 3})
    code, active = await rest(app, "POST", "/sessions", {"chargerId": "CP001", "connectorId": 0})
    clock.advance(20 * DAY)
    code, recent = await rest(app, "POST", "/sessions", {"chargerId": "CP002", "connectorId": 0})
    await rest(app, "POST", f"/sessions/{recent['sessionId']}/stop", {})
    await app.driver.flush()

    clock.advance(11 * DAY)  # the first stop is now 31 days old, the second 11
    pruned = await app.prune_history()
    assert pruned.sessions == 1 and pruned.events >= 2
    code, history = await rest(app, "GET", "/sessions?status=stopped")
    assert [s["sessionId"] for s in history] == [recent["sessionId"]]
    code, _ = await rest(app, "GET", f"/sessions/{old['sessionId']}")
    assert code == 404
    # An active session is never history, however old.
    code, body = await rest(app, "GET", f"/sessions/{active['sessionId']}")
    assert code == 200 and body["status"] == "active"
    code, lines = await rest(app, "GET", "/station/events")
    assert old["sessionId"] not in {line["sessionId"] for line in lines}
    assert recent["sessionId"] in {line["sessionId"] for line in lines}
    assert await app.prune_history() == Pruned(0, 0, 0)


async def test_the_history_is_pruned_once_a_day_without_being_asked(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller(config_keeping(1))
    await until(lambda: app.pruned_at == clock.now())  # at start-up
    code, old = await rest(app, "POST", "/sessions", {"chargerId": "CP002", "connectorId": 0})
    await rest(app, "POST", f"/sessions/{old['sessionId']}/stop", {})
    await app.driver.flush()
    clock.advance(DAY + 1)
    await until(lambda: app.pruned_at == clock.now())
    code, _ = await rest(app, "GET", f"/sessions/{old['sessionId']}")
    assert code == 404


async def test_start_keys_older_than_a_resend_could_be_are_pruned(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    await charger.boot()
    await charger.call(start_request(1))
    await app.driver.flush()
    assert len(app.repository.load().start_keys) == 1
    clock.advance(START_KEY_MEMORY + 1)
    assert (await app.prune_history()).start_keys == 1
    assert app.repository.load().start_keys == ()
    await charger.close()
