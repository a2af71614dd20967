"""``--log-format json`` (docs/configuration.md, "Logs"): every line a JSON object."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from controller.logformat import JsonFormatter
from tests.controller.conftest import ROOT
from tests.controller.process import controller_command


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    item = logging.LogRecord("controller.test", logging.WARNING, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(item, name, value)
    return item


def test_a_line_has_the_fields_and_the_ids_the_record_names() -> None:
    line = json.loads(
        JsonFormatter().format(
            record("%s: refused", "CP001", charger_id="CP001", session_id="s1", transaction_id=7)
        )
    )
    assert line["level"] == "WARNING" and line["logger"] == "controller.test"
    assert line["msg"] == "CP001: refused"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert (line["chargerId"], line["sessionId"], line["transactionId"]) == ("CP001", "s1", 7)
    assert "peer" not in line


def test_what_a_peer_sends_cannot_break_a_line_and_a_traceback_stays_in_it() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        item = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "frame %r", ("a\nb\u2028",), sys.exc_info()
        )
    text = JsonFormatter().format(item)
    assert "\n" not in text
    line = json.loads(text)
    assert "a\\nb" in line["msg"] and "ValueError: boom" in line["exc"]


async def test_the_controller_logs_json_lines_from_start_to_stop(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *controller_command(ROOT / "config.json", tmp_path / "c.db", "--log-format", "json"),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while not any("REST API on" in line.get("msg", "") for line in lines):
            raw = await process.stderr.readline()
            assert raw, f"exited early: {lines}"
            lines.append(json.loads(raw))
        process.send_signal(signal.SIGTERM)
        _, rest = await process.communicate()
    assert process.returncode == 0
    lines += [json.loads(raw) for raw in rest.splitlines()]
    assert any(line["msg"] == "stopping" for line in lines)
    assert {line["logger"] for line in lines} >= {"controller.app", "controller.ocpp.server"}
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= set(line)
    # The warning about chargers without a password names each charger as text.
    assert any("without a password" in line["msg"] for line in lines)
