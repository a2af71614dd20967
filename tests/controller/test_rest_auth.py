"""Who may use the REST API (docs/security-rest.md), over a real server on a free port."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controller.app import ControllerApp
from controller.config import (
    API_TOKENS_ENV_VAR,
    ConfigError,
    StationConfig,
    load_config,
    with_environment_tokens,
)
from controller.rest import create_app, routes
from controller.rest_auth import (
    SECURITY_HEADERS,
    Access,
    TokenBook,
    bearer_token,
    is_loopback,
    token_sha256,
)
from controller.throttle import BLOCK_FOR, FAILURE_LIMIT
from shell.clock import ManualClock
from tests.controller.conftest import ROOT, example_config

READ_TOKEN = "read-token-0123456789abcdefghijklmnopqrstuvwxyz"
OPERATE_TOKEN = "operate-token-0123456789abcdefghijklmnopqrstuvwxyz"
UNKNOWN_TOKEN = "not-a-token-0123456789abcdefghijklmnopqrstuvwxyz"
TOKENS = [
    {"name": "monitor", "role": "read", "sha256": token_sha256(READ_TOKEN)},
    {"name": "backend", "role": "operate", "sha256": token_sha256(OPERATE_TOKEN)},
]
CREDENTIALS = {"none": None, "unknown": UNKNOWN_TOKEN, "read": READ_TOKEN, "operate": OPERATE_TOKEN}

# Every route and who may use it: a route added without a line here fails
# test_every_route_has_a_rule, so its access is a decision someone made.
EXPECTED_ACCESS = {
    ("GET", "/"): "open",
    ("GET", "/dashboard.js"): "open",
    ("GET", "/dashboard.css"): "open",
    ("GET", "/healthz"): "open",
    ("GET", "/favicon.svg"): "open",
    ("GET", "/openapi.json"): "open",
    ("GET", "/docs"): "open",
    ("GET", "/docs.js"): "open",
    ("GET", "/docs.css"): "open",
    ("GET", "/station/status"): "read",
    ("GET", "/station/stream"): "read",
    ("GET", "/station/events"): "read",
    ("GET", "/metrics"): "read",
    ("GET", "/sessions"): "read",
    ("GET", "/sessions/{session_id}"): "read",
    ("POST", "/sessions"): "operate",
    ("POST", "/sessions/{session_id}/stop"): "operate",
    ("POST", "/sessions/{session_id}/power-update"): "operate",
    ("PUT", "/station/limit"): "operate",
    ("DELETE", "/station/limit"): "operate",
    ("POST", "/station/site-meter"): "operate",
}
# What an allowed request sends and gets.
BODIES: dict[str, dict[str, Any]] = {
    "/sessions": {"chargerId": "CP002", "connectorId": 0, "vehicleMaxPower": 50},
    "/sessions/{session_id}/stop": {"consumedEnergy": 1.5},
    "/sessions/{session_id}/power-update": {"consumedPower": 20},
    "/station/limit": {"maxPower": 300, "reason": "test"},
    "/station/site-meter": {"power": 50},
}
# The example station reads no pushed meter: past the access check, 409.
SUCCESS = {("POST", "/sessions"): 201, ("POST", "/station/site-meter"): 409}


def secured(**api: Any) -> StationConfig:
    return example_config(api={"tokens": TOKENS, **api})


class Client:
    """A real HTTP client; returns status, headers and the body (JSON when it is JSON)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, data=data, headers=sent) as response:
            if response.content_type == "text/event-stream":
                # The stream never ends: its headers are the answer.
                return response.status, dict(response.headers), None
            text = await response.text()
            answer: Any = text
            if response.content_type == "application/json" and text:
                answer = json.loads(text)
            return response.status, dict(response.headers), answer


@pytest.fixture
async def client(start_controller: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """Start a controller on 127.0.0.1 with a config and hand back a client for it."""
    sessions: list[aiohttp.ClientSession] = []

    async def start(config: StationConfig | None = None) -> Client:
        app: ControllerApp = await start_controller(config)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Client(http, f"http://127.0.0.1:{app.rest_port}")

    yield start
    for http in sessions:
        await http.close()


def assert_error(answer: Any, code: str) -> None:
    assert isinstance(answer, dict), answer
    assert set(answer) == {"error", "message", "details"}
    assert answer["error"] == code, answer
    assert answer["message"]


async def active_sessions(api: Client) -> list[dict[str, Any]]:
    status, _, sessions = await api.call("GET", "/sessions?status=active", token=OPERATE_TOKEN)
    assert status == 200
    found: list[dict[str, Any]] = sessions
    return found


# -- the route table -------------------------------------------------------------------------


async def test_every_route_has_a_rule(start_controller: Callable[..., Any]) -> None:
    app: ControllerApp = await start_controller(secured())
    served = create_app(app.driver, lambda: "id")
    registered = {(r.method, r.resource.canonical) for r in served.router.routes() if r.resource}
    gets = {path for method, path in registered if method == "GET"}
    assert {path for method, path in registered if method == "HEAD"} == gets
    assert {key for key in registered if key[0] != "HEAD"} == set(EXPECTED_ACCESS)
    assert {(r.method, r.path): r.access.value for r in routes()} == EXPECTED_ACCESS


def expected_status(method: str, path: str, access: str, credential: str) -> int:
    if access == "open":
        return 200
    if credential in ("none", "unknown"):
        return 401
    if access == "operate" and credential == "read":
        return 403
    return SUCCESS.get((method, path), 200)


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize(("method", "path"), list(EXPECTED_ACCESS))
async def test_route_access(
    client: Callable[..., Any], method: str, path: str, credential: str
) -> None:
    api: Client = await client(secured())
    session_id = "none"
    if "{session_id}" in path:
        _, _, created = await api.call(
            "POST", "/sessions", token=OPERATE_TOKEN, body={"chargerId": "CP001", "connectorId": 0}
        )
        session_id = created["sessionId"]
    before = await active_sessions(api)
    url = path.replace("{session_id}", session_id)
    status, headers, answer = await api.call(
        method,
        url,
        token=CREDENTIALS[credential],
        body=None if method == "DELETE" else BODIES.get(path),
    )
    expected = expected_status(method, path, EXPECTED_ACCESS[(method, path)], credential)
    assert status == expected, answer
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(answer, "unauthorized" if credential == "none" else "invalid_token")
    if status == 403:
        assert_error(answer, "forbidden")
        assert "operate" in answer["message"]
    if status >= 400 and method != "GET":
        assert await active_sessions(api) == before  # a refused change changes nothing


async def test_head_needs_what_get_needs(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    assert (await api.call("HEAD", "/station/status"))[0] == 401
    assert (await api.call("HEAD", "/station/status", token=READ_TOKEN))[0] == 200
    assert (await api.call("HEAD", "/healthz"))[0] == 200


async def test_unknown_paths_and_methods_need_a_token_before_they_are_told(
    client: Callable[..., Any],
) -> None:
    api: Client = await client(secured())
    assert (await api.call("GET", "/nope"))[0] == 401
    assert (await api.call("GET", "/nope", token=READ_TOKEN))[0] == 404
    assert (await api.call("DELETE", "/sessions", token=READ_TOKEN))[0] == 403
    status, headers, answer = await api.call("DELETE", "/sessions", token=OPERATE_TOKEN)
    assert status == 405
    assert_error(answer, "method_not_allowed")
    assert "POST" in headers["Allow"]


async def test_a_read_token_is_told_what_it_lacks(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    body = {"chargerId": "CP001", "connectorId": 0}
    status, _, answer = await api.call("POST", "/sessions", token=READ_TOKEN, body=body)
    assert status == 403
    assert "'monitor' may only read" in answer["message"]
    assert await active_sessions(api) == []


async def test_the_authorization_scheme_must_be_bearer(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    for header in (f"Basic {READ_TOKEN}", READ_TOKEN, "Bearer", "Bearer  "):
        status, _, answer = await api.call(
            "GET", "/station/status", headers={"Authorization": header}
        )
        assert status == 401, header
        assert_error(answer, "unauthorized")
    status, _, _ = await api.call(
        "GET", "/station/status", headers={"Authorization": f"bearer   {READ_TOKEN} "}
    )
    assert status == 200


async def test_a_token_of_any_bytes_is_just_unknown(client: Callable[..., Any]) -> None:
    """Sent over a raw socket: header bytes that are not UTF-8 are a 401, not a 500."""
    api: Client = await client(secured())
    port = int(api.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /station/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\xed\x80abc\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"invalid_token"' in answer


# -- tokens from the environment and the `token` command -------------------------------------


async def test_environment_tokens_are_accepted(
    client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    data = json.loads((ROOT / "config.json").read_text())
    data["api"] = {"tokens": TOKENS[:1]}  # the read token from the file
    path.write_text(json.dumps(data))
    from_env = "env-token-0123456789abcdefghijklmnopqrstuvwxyz"
    entry = {"name": "from-env", "role": "operate", "sha256": token_sha256(from_env)}
    monkeypatch.setenv(API_TOKENS_ENV_VAR, json.dumps([entry]))
    api: Client = await client(load_config(path))
    body = {"chargerId": "CP001", "connectorId": 0}
    assert (await api.call("POST", "/sessions", token=from_env, body=body))[0] == 201
    assert (await api.call("GET", "/station/status", token=READ_TOKEN))[0] == 200
    assert (await api.call("GET", "/station/status"))[0] == 401


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('[{"name": "a", "role": "read", "sha256": "abc"}]', f"{API_TOKENS_ENV_VAR}[0].sha256"),
        ('[{"name": "a", "role": "root", "sha256": "' + "0" * 64 + '"}]', "[0].role"),
        ('[{"role": "read", "sha256": "' + "0" * 64 + '"}]', f"{API_TOKENS_ENV_VAR}[0].name"),
        ('{"name": "a"}', f"{API_TOKENS_ENV_VAR}: must be a list"),
        ("[{", f"{API_TOKENS_ENV_VAR}: not valid JSON"),
        (json.dumps([TOKENS[0] | {"name": "again"}]), "[0].sha256: the same token as"),
        (json.dumps([TOKENS[1] | {"role": "read"}]), "[0].name: duplicate token name 'backend'"),
    ],
)
def test_a_bad_environment_token_names_its_place(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        with_environment_tokens(secured(), {API_TOKENS_ENV_VAR: value})
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_no_environment_variable_changes_nothing() -> None:
    config = secured()
    assert with_environment_tokens(config, {}) is config
    assert with_environment_tokens(config, {API_TOKENS_ENV_VAR: " "}) is config


@pytest.mark.parametrize(
    ("api", "problem"),
    [
        ({"tokens": [{"name": "a", "role": "read", "sha256": "g" * 64}]}, "api.tokens[0].sha256"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "a" * 63}]}, "api.tokens[0].sha256"),
        ({"tokens": [{"name": "", "role": "read", "sha256": "a" * 64}]}, "api.tokens[0].name"),
        ({"tokens": [{"name": "a", "role": "admin", "sha256": "a" * 64}]}, "api.tokens[0].role"),
        ({"tokens": [TOKENS[0], TOKENS[0] | {"role": "operate"}]}, "api.tokens[1].name"),
        ({"tokens": [TOKENS[0], TOKENS[1] | {"name": "monitor"}]}, "api.tokens[1].name"),
        ({"tokens": [TOKENS[0], TOKENS[0] | {"name": "b"}]}, "api.tokens[1].sha256"),
        ({"corsOrigins": ["*"]}, "api.corsOrigins[0]"),
        ({"corsOrigins": ["https://ops.example.com/"]}, "api.corsOrigins[0]"),
        ({"healthTimeout": 0}, "api.healthTimeout"),
        ({"healthTimeout": 61}, "api.healthTimeout"),
        ({"token": []}, "api.token"),
    ],
)
def test_bad_api_config_names_the_field(api: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        example_config(api=api)
    assert any(line.startswith(problem + ":") for line in raised.value.problems), (
        raised.value.problems
    )


def test_uppercase_hex_is_the_same_hash() -> None:
    entry = TOKENS[0] | {"sha256": TOKENS[0]["sha256"].upper()}
    config = example_config(api={"tokens": [entry]})
    found = TokenBook(config.api.tokens).identify(READ_TOKEN)
    assert found is not None and found.name == "monitor"


# -- pure pieces -----------------------------------------------------------------------------


def test_every_configured_hash_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the work does not depend on which token matched, or whether any did."""
    book = TokenBook(secured().api.tokens)
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for token, name in ((READ_TOKEN, "monitor"), (OPERATE_TOKEN, "backend"), (UNKNOWN_TOKEN, None)):
        calls.clear()
        found = book.identify(token)
        assert (found.name if found else None) == name
        assert len(calls) == 2


def test_the_role_comes_with_the_token() -> None:
    book = TokenBook(secured().api.tokens)
    read, operate = book.identify(READ_TOKEN), book.identify(OPERATE_TOKEN)
    assert read is not None and read.role is Access.READ
    assert operate is not None and operate.role is Access.OPERATE
    assert not TokenBook(())


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Bearer", None),
        ("Basic abc", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.45.6.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
        ("localhost", False),
    ],
)
def test_trusted_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


# -- without tokens --------------------------------------------------------------------------


async def test_without_tokens_reads_are_open_and_loopback_may_write(
    client: Callable[..., Any],
) -> None:
    api: Client = await client()
    assert (await api.call("GET", "/station/status"))[0] == 200
    assert (await api.call("GET", "/station/status", token=UNKNOWN_TOKEN))[0] == 200
    body = {"chargerId": "CP001", "connectorId": 0}
    assert (await api.call("POST", "/sessions", body=body))[0] == 201


def this_machines_network_address() -> str | None:
    """An address of this machine that is not loopback (the one a packet to a documentation
    network would leave from); nothing is sent: a UDP connect only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if is_loopback(address) else address


async def test_without_tokens_other_machines_may_not_write(db_path: Path) -> None:
    """Over a real socket: the controller listens on this machine's network address and the
    client connects to it, so the server sees a peer that is not loopback (the packets still
    never leave the machine)."""
    address = this_machines_network_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    app = ControllerApp(example_config(), host=address, rest_port=0, ocpp_port=0, db_path=db_path)
    await app.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Client(http, f"http://{address}:{app.rest_port}")
            assert (await api.call("GET", "/station/status"))[0] == 200
            body = {"chargerId": "CP001", "connectorId": 0}
            status, _, answer = await api.call("POST", "/sessions", body=body)
            assert status == 403
            assert_error(answer, "forbidden")
            assert "ev-controller token" in answer["message"]
            assert (await api.call("GET", "/sessions?status=active"))[2] == []
    finally:
        await app.stop()


async def test_the_start_up_log_says_the_mode(
    start_controller: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="controller.rest_auth"):
        await start_controller()
    assert "REST API without tokens" in caplog.text
    assert "ev-controller token" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="controller.rest_auth"):
        await start_controller(secured(corsOrigins=["https://ops.example.com"]))
    assert "REST API with 2 token(s) (1 read, 1 operate)" in caplog.text
    assert "https://ops.example.com" in caplog.text


# -- bodies must be JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_of_another_type_is_415_and_creates_nothing(
    client: Callable[..., Any], content_type: str
) -> None:
    api: Client = await client()
    body = json.dumps({"chargerId": "CP001", "connectorId": 0}).encode()
    status, _, answer = await api.call(
        "POST", "/sessions", data=body, headers={"Content-Type": content_type}
    )
    assert status == 415
    assert_error(answer, "unsupported_media_type")
    assert "Content-Type" in answer["message"]
    assert answer["details"] == [{"field": "Content-Type", "message": "must be application/json"}]
    assert await active_sessions(api) == []


async def test_a_body_without_a_type_is_415(client: Callable[..., Any]) -> None:
    api: Client = await client()
    body = json.dumps({"chargerId": "CP001", "connectorId": 0}).encode()
    async with api.http.post(
        api.base + "/sessions", data=body, skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 415
    assert await active_sessions(api) == []


async def test_json_with_a_charset_and_an_empty_stop_are_accepted(
    client: Callable[..., Any],
) -> None:
    api: Client = await client()
    status, _, session = await api.call(
        "POST",
        "/sessions",
        body={"chargerId": "CP001", "connectorId": 0},
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert status == 201
    async with api.http.post(
        api.base + f"/sessions/{session['sessionId']}/stop", skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 200
        assert (await response.json())["status"] == "stopped"


# -- browsers --------------------------------------------------------------------------------

OPS = "https://ops.example.com"
EVIL = "https://evil.example.net"


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("access-control-")}


async def test_no_cors_headers_unless_configured(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    _, headers, _ = await api.call(
        "GET", "/station/status", token=READ_TOKEN, headers={"Origin": OPS}
    )
    assert cors_headers(headers) == {}
    assert "Vary" not in headers


async def test_cors_for_a_listed_origin_only(client: Callable[..., Any]) -> None:
    api: Client = await client(secured(corsOrigins=[OPS]))
    status, headers, _ = await api.call(
        "GET", "/station/status", token=READ_TOKEN, headers={"Origin": OPS}
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == OPS
    assert "Origin" in headers["Vary"]
    # An error answer too, so that the page can read it.
    status, headers, _ = await api.call("GET", "/station/status", headers={"Origin": OPS})
    assert status == 401
    assert headers["Access-Control-Allow-Origin"] == OPS

    status, headers, _ = await api.call(
        "GET", "/station/status", token=READ_TOKEN, headers={"Origin": EVIL}
    )
    assert status == 200
    assert cors_headers(headers) == {}
    assert "Origin" in headers["Vary"]  # a cache must not hand OPS's answer to EVIL


async def test_preflight_for_a_listed_origin(client: Callable[..., Any]) -> None:
    api: Client = await client(secured(corsOrigins=[OPS]))
    asking = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, headers, _ = await api.call("OPTIONS", "/sessions", headers={"Origin": OPS, **asking})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == OPS
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "Origin" in headers["Vary"]

    status, headers, _ = await api.call("OPTIONS", "/sessions", headers={"Origin": EVIL, **asking})
    assert status != 204
    assert cors_headers(headers) == {}


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert headers["Content-Security-Policy"] == "default-src 'self'; frame-ancestors 'none'"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
    ],
)
async def test_dashboard_files_carry_the_security_headers(
    client: Callable[..., Any], path: str, content_type: str
) -> None:
    api: Client = await client(secured())
    status, headers, body = await api.call("GET", path)
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert body
    assert_security_headers(headers)


async def test_json_answers_carry_them_too(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    for token in (READ_TOKEN, None):
        _, headers, _ = await api.call("GET", "/station/status", token=token)
        assert_security_headers(headers)


class InlineCode(HTMLParser):
    """What a Content-Security-Policy without 'unsafe-inline' would block in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.files: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.blocked += [f"{tag} {name}=" for name in names if name.startswith("on")]
        if "style" in names:
            self.blocked.append(f"{tag} style=")
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script":
            self._in_script = True
            if names.get("src") is None:
                self.blocked.append("<script> without src")
            else:
                self.files.append(names["src"] or "")
        if tag == "link" and names.get("rel") == "stylesheet":
            self.files.append(names.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.blocked.append("inline script text")


async def test_the_dashboard_page_has_nothing_its_csp_blocks(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    _, _, page = await api.call("GET", "/")
    parser = InlineCode()
    parser.feed(page)
    assert parser.blocked == []
    assert sorted(parser.files) == ["dashboard.css", "dashboard.js"]
    for name in parser.files:  # relative to the page, as the browser resolves them
        assert (await api.call("GET", "/" + name))[0] == 200


# How the dashboard asks for a token and keeps it: in a real browser,
# tests/controller/test_dashboard_browser.py.


# -- /healthz --------------------------------------------------------------------------------


async def test_healthz_is_open_and_answers_ok(client: Callable[..., Any]) -> None:
    api: Client = await client(secured())
    status, headers, answer = await api.call("GET", "/healthz")
    assert (status, answer) == (200, {"status": "ok"})
    assert headers["Content-Type"].startswith("application/json")
    assert (await api.call("GET", "/healthz", token=UNKNOWN_TOKEN))[0] == 200


async def test_healthz_is_503_while_the_database_does_not_answer(
    start_controller: Callable[..., Any],
) -> None:
    app: ControllerApp = await start_controller(secured(healthTimeout=0.2))
    async with aiohttp.ClientSession() as http:
        api = Client(http, f"http://127.0.0.1:{app.rest_port}")
        # The repository's one thread is held up, as by a disk that hangs.
        gate = threading.Event()
        held = asyncio.ensure_future(app.driver.writer.read(gate.wait))
        try:
            status, _, answer = await api.call("GET", "/healthz")
            assert status == 503
            assert_error(answer, "unhealthy")
        finally:
            gate.set()
            await held
        assert (await api.call("GET", "/healthz"))[:3:2] == (200, {"status": "ok"})


# -- failed authentications ------------------------------------------------------------------


async def test_ten_bad_tokens_block_the_address_for_a_minute(
    client: Callable[..., Any], clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    api: Client = await client(secured())
    with caplog.at_level(logging.WARNING, logger="controller.rest_auth"):
        for _ in range(FAILURE_LIMIT):
            assert (await api.call("GET", "/station/status", token=UNKNOWN_TOKEN))[0] == 401
    # Logged once with a count, and once for the block: not once per attempt.
    lines = [r.getMessage() for r in caplog.records if r.name == "controller.rest_auth"]
    assert len(lines) == 2, lines
    assert "127.0.0.1: failed REST authentications (1 since the last report)" in lines[0]
    assert f"{FAILURE_LIMIT} failed REST authentications" in lines[1]

    # Blocked without checking, even with a good token.
    status, headers, answer = await api.call("GET", "/station/status", token=READ_TOKEN)
    assert status == 429
    assert_error(answer, "too_many_failures")
    assert headers["Retry-After"] == str(int(BLOCK_FOR))
    assert (await api.call("GET", "/healthz"))[0] == 200  # always open

    clock.advance(BLOCK_FOR / 2)
    status, headers, _ = await api.call("POST", "/sessions", token=OPERATE_TOKEN, body={})
    assert status == 429
    assert headers["Retry-After"] == str(int(BLOCK_FOR / 2))

    clock.advance(BLOCK_FOR / 2)
    assert (await api.call("GET", "/station/status", token=READ_TOKEN))[0] == 200


async def test_requests_without_a_token_are_no_failures(client: Callable[..., Any]) -> None:
    """A dashboard not yet given its token polls without one: that must not block it."""
    api: Client = await client(secured())
    for _ in range(2 * FAILURE_LIMIT):
        assert (await api.call("GET", "/station/status"))[0] == 401
    assert (await api.call("GET", "/station/status", token=READ_TOKEN))[0] == 200


# -- nothing leaks ---------------------------------------------------------------------------


async def test_no_traceback_reaches_a_client_even_in_debug_mode(
    start_controller: Callable[..., Any],
) -> None:
    """aiohttp's last-resort 500 page shows the traceback when the loop is in debug mode;
    an exception that escapes every middleware must still not show one."""
    app: ControllerApp = await start_controller(secured())
    served = create_app(app.driver, lambda: "id")

    @web.middleware
    async def broken(request: web.Request, handler: Any) -> web.StreamResponse:
        raise RuntimeError("secret internals")

    served.middlewares.insert(0, broken)
    loop = asyncio.get_running_loop()
    was_debug = loop.get_debug()
    loop.set_debug(True)
    runner = web.AppRunner(served, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/", headers={"Accept": "text/html"}) as response,
        ):
            page = await response.text()
        assert response.status == 500
        assert "Traceback" not in page
        assert "secret internals" not in page
    finally:
        loop.set_debug(was_debug)
        await runner.cleanup()


def test_token_hash_is_sha256_hex() -> None:
    assert token_sha256("abc") == hashlib.sha256(b"abc").hexdigest()
