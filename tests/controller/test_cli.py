"""The command line: a bad config stops start-up with exit status 2 and no traceback;
``ev-controller token`` prints a new API token."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.app import ControllerApp
from controller.cli import build_parser, config_path, main
from tests.controller.conftest import ROOT, example_config


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_invalid_config_exits_2_naming_every_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "stationId": "S",
                "gridCapacity": 0,
                "chargers": [
                    {"id": "A", "maxPower": 5, "connectors": 1},
                    {"id": "B", "maxPower": -1, "connectors": 1},
                ],
            }
        )
    )
    result = run("--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "gridCapacity: must be greater than 0" in result.stderr
    assert "chargers[1].maxPower: must be greater than 0" in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    assert main(["--config", str(tmp_path / "nope.json")]) == 2


def test_config_path_precedence(tmp_path: Path) -> None:
    os.environ.pop("EV_CONTROLLER_CONFIG", None)
    assert config_path(None) == Path("config.json")
    os.environ["EV_CONTROLLER_CONFIG"] = str(tmp_path / "env.json")
    try:
        assert config_path(None) == tmp_path / "env.json"
        assert config_path(Path("flag.json")) == Path("flag.json")
    finally:
        del os.environ["EV_CONTROLLER_CONFIG"]


def test_the_environment_variable_names_the_config(tmp_path: Path) -> None:
    bad = tmp_path / "from-env.json"
    bad.write_text("{}")
    result = run(env={"EV_CONTROLLER_CONFIG": str(bad)})
    assert result.returncode == 2
    assert "from-env.json" in result.stderr
    assert "stationId: is required" in result.stderr


def printed_token(capsys: pytest.CaptureFixture[str], name: str, role: str) -> tuple[str, Any]:
    assert main(["token", "--name", name, "--role", role]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines
    return lines[1], json.loads(lines[3])


async def test_the_token_command_prints_a_token_and_its_entry(
    capsys: pytest.CaptureFixture[str], start_controller: Callable[..., Any]
) -> None:
    token, entry = printed_token(capsys, "backend", "operate")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)  # 32 random bytes, URL-safe
    assert entry == {
        "name": "backend",
        "role": "operate",
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
    }
    assert printed_token(capsys, "backend", "operate")[0] != token

    # The entry, pasted into a config, lets the token in.
    app: ControllerApp = await start_controller(example_config(api={"tokens": [entry]}))
    url = f"http://127.0.0.1:{app.rest_port}/sessions"
    body = {"chargerId": "CP001", "connectorId": 0}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(url, json=body, headers=headers) as response:
            assert response.status == 201


def test_the_token_command_refuses_what_the_config_would(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "--name", "", "--role", "read"]) == 2
    assert "name: must have at least 1 character(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["token", "--name", "x", "--role", "admin"])
    assert stopped.value.code == 2


def test_without_a_command_the_controller_starts_as_before() -> None:
    args = build_parser().parse_args(["--config", "x.json", "--rest-port", "1"])
    assert args.command is None
    assert args.config == Path("x.json")
    assert args.rest_port == 1


def test_a_bad_environment_token_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text((ROOT / "config.json").read_text())
    bad = json.dumps([{"name": "a", "role": "read", "sha256": "xyz"}])
    result = run("--config", str(config), env={"EV_CONTROLLER_API_TOKENS": bad})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "EV_CONTROLLER_API_TOKENS[0].sha256: must be 64 hexadecimal digits" in result.stderr
