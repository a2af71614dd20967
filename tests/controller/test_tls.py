"""TLS on both ports (docs/security-connections.md): wss and https with certificates made by
``trustme`` at run time, OCPP security profiles 2 and 3, no plain text on a TLS port, reload on
SIGHUP, and unusable files as one-line start-up errors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import websockets
from websockets.exceptions import InvalidStatus

from controller import cli
from controller.app import ControllerApp
from controller.config import StationConfig, config_from_dict
from controller.listener import TlsError, certificate_problem
from controller.ocpp.transport import CLOSE_TIMEOUT
from tests.controller.conftest import ROOT, example_config
from tests.controller.ocpp_client import FakeCharger
from tests.controller.process import controller_command
from tests.controller.raw_client import read_until_closed

WAIT = 5.0


@dataclass
class Pki:
    """A server certificate for 127.0.0.1 from one CA, client certificates from another."""

    folder: Path
    server_ca: trustme.CA
    client_ca: trustme.CA

    def server_files(self, name: str = "server", ca: trustme.CA | None = None) -> dict[str, str]:
        cert = (ca or self.server_ca).issue_cert("127.0.0.1", "localhost")
        paths = {"cert": self.folder / f"{name}.crt", "key": self.folder / f"{name}.key"}
        paths["cert"].write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(paths["key"]))
        return {field: str(path) for field, path in paths.items()}

    def client_ca_file(self) -> str:
        path = self.folder / "client-ca.crt"
        self.client_ca.cert_pem.write_to_path(str(path))
        return str(path)

    def client_context(
        self,
        *,
        trust: trustme.CA | None = None,
        cn: str | None = None,
        ca: trustme.CA | None = None,
    ) -> ssl.SSLContext:
        """A client trusting ``trust`` (default: the server CA), with a client certificate
        of subject CN ``cn`` issued by ``ca`` (default: the client CA) when ``cn`` is given."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        (trust or self.server_ca).configure_trust(context)
        if cn is not None:
            (ca or self.client_ca).issue_cert(
                f"{cn.lower()}.example", common_name=cn
            ).configure_cert(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, trustme.CA(), trustme.CA())


def tls_config(tls: dict[str, str], **server: Any) -> StationConfig:
    data = example_config().model_dump(by_alias=True, mode="json", exclude_none=True)
    data["server"] = {**data["server"], "tls": tls, **server}
    data["chargers"][1]["password"] = "0123456789abcdef"
    return config_from_dict(data)


def wss(app: ControllerApp) -> str:
    return f"wss://127.0.0.1:{app.ocpp_port}/ocpp"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def get_status(app: ControllerApp, context: ssl.SSLContext | None) -> int:
    scheme = "http" if context is None else "https"
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{scheme}://127.0.0.1:{app.rest_port}/station/status", ssl=context or True
        ) as response,
    ):
        await response.read()
        return response.status


async def refused_by_tls(url: str, context: ssl.SSLContext, **kwargs: Any) -> None:
    """The connection fails: in the TLS handshake, or (TLS 1.3 checks a client certificate
    after the client thinks it is done) right after it, before an upgrade."""
    with pytest.raises((ssl.SSLError, OSError, websockets.InvalidHandshake, EOFError)):
        ws = await asyncio.wait_for(
            websockets.connect(url, ssl=context, subprotocols=["ocpp1.6"], **kwargs),  # type: ignore[list-item]
            WAIT,
        )
        await ws.close()


# -- profile 2: server certificate, HTTP Basic password ------------------------------------


async def test_wss_with_a_password_profile_2(pki: Pki, start_controller: Any) -> None:
    app: ControllerApp = await start_controller(tls_config(pki.server_files()))
    context = pki.client_context()
    with pytest.raises(InvalidStatus) as caught:
        await websockets.connect(
            f"{wss(app)}/CP002",
            ssl=context,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic("CP002", "wrong"),
        )
    assert caught.value.response.status_code == 401
    charger = await FakeCharger(wss(app), "CP002").connect(
        ssl=context, additional_headers=basic("CP002", "0123456789abcdef")
    )
    assert (await charger.boot()).status == "Accepted"
    await charger.close()


async def test_https_rest_with_the_ca_trusted(pki: Pki, start_controller: Any) -> None:
    app: ControllerApp = await start_controller(tls_config(pki.server_files()))
    assert await get_status(app, pki.client_context()) == 200
    # A client that does not trust the server's CA does not get an answer.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get_status(app, ssl.create_default_context())


async def test_plain_http_and_ws_are_not_served_on_a_tls_port(
    pki: Pki, start_controller: Any
) -> None:
    app: ControllerApp = await start_controller(tls_config(pki.server_files()))
    with pytest.raises(aiohttp.ClientError):
        await get_status(app, None)
    with pytest.raises((websockets.InvalidHandshake, OSError, EOFError)):
        await websockets.connect(
            f"ws://127.0.0.1:{app.ocpp_port}/ocpp/CP001",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            open_timeout=WAIT,
        )


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_below_1_2_is_refused(pki: Pki, start_controller: Any) -> None:
    app: ControllerApp = await start_controller(tls_config(pki.server_files()))
    assert app._rest_tls is not None
    assert app._rest_tls.context.minimum_version is ssl.TLSVersion.TLSv1_2
    # A client that offers TLS 1.1 at most (and would accept any cipher) gets no connection.
    context = pki.client_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", app.rest_port, ssl=context), WAIT
        )


# -- profile 3: client certificates ----------------------------------------------------------


async def test_client_certificate_with_the_charger_id_as_cn_profile_3(
    pki: Pki, start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = tls_config({**pki.server_files(), "clientCa": pki.client_ca_file()})
    app: ControllerApp = await start_controller(config)
    assert any(
        "OCPP 1.6J on wss://" in r.message and "client certificates required" in r.message
        for r in caplog.records
    )
    assert any(
        "REST API on https://" in r.message and "client certificates required" in r.message
        for r in caplog.records
    )

    charger = await FakeCharger(wss(app), "CP001").connect(ssl=pki.client_context(cn="CP001"))
    assert (await charger.boot()).status == "Accepted"

    # A certificate of the right CA naming another charger: 403 before the upgrade.
    with pytest.raises(InvalidStatus) as caught:
        await websockets.connect(
            f"{wss(app)}/CP003",
            ssl=pki.client_context(cn="CP001"),
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        )
    assert caught.value.response.status_code == 403
    assert any("CP003 refused: certificate CN 'CP001'" in r.message for r in caplog.records)
    # No certificate, or one from another CA: refused in the TLS handshake.
    await refused_by_tls(f"{wss(app)}/CP003", pki.client_context())
    await refused_by_tls(f"{wss(app)}/CP003", pki.client_context(cn="CP003", ca=trustme.CA()))
    # Profile 3 and a password together: both are needed.
    with pytest.raises(InvalidStatus) as caught:
        await websockets.connect(
            f"{wss(app)}/CP002",
            ssl=pki.client_context(cn="CP002"),
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        )
    assert caught.value.response.status_code == 401
    both = await FakeCharger(wss(app), "CP002").connect(
        ssl=pki.client_context(cn="CP002"), additional_headers=basic("CP002", "0123456789abcdef")
    )
    assert (await both.boot()).status == "Accepted"
    # The first charger was never disturbed.
    assert (await charger.boot()).status == "Accepted"
    await both.close()
    await charger.close()


async def test_rest_tls_may_differ_from_the_ocpp_port(pki: Pki, start_controller: Any) -> None:
    """server.restTls: here the REST port asks for no client certificate, the OCPP port does."""
    rest_files = pki.server_files("rest")
    config = tls_config(
        {**pki.server_files(), "clientCa": pki.client_ca_file()}, restTls=rest_files
    )
    app: ControllerApp = await start_controller(config)
    assert await get_status(app, pki.client_context()) == 200
    await refused_by_tls(f"{wss(app)}/CP001", pki.client_context())


def test_certificate_problem_reads_the_subject_cn() -> None:
    class Peer:
        def __init__(self, cert: dict[str, Any]) -> None:
            self.cert = cert

        def getpeercert(self) -> dict[str, Any]:
            return self.cert

    subject = ((("organizationName", "x"),), (("commonName", "CP001"),))
    assert certificate_problem(Peer({"subject": subject}), "CP001") is None
    assert certificate_problem(Peer({"subject": subject}), "CP0011") is not None
    two = (*subject, (("commonName", "CP002"),))
    assert certificate_problem(Peer({"subject": two}), "CP001") is not None
    assert certificate_problem(Peer({}), "CP001") == "no client certificate"
    assert certificate_problem(None, "CP001") == "no client certificate"


# -- reload ----------------------------------------------------------------------------------


async def test_reload_switches_certificates_for_new_handshakes_only(
    pki: Pki, start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    files = pki.server_files()
    app: ControllerApp = await start_controller(tls_config(files))
    charger = await FakeCharger(wss(app), "CP001").connect(ssl=pki.client_context())
    assert (await charger.boot()).status == "Accepted"

    new_ca = trustme.CA()
    only_new = pki.client_context(trust=new_ca)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get_status(app, only_new)

    pki.server_files("server", ca=new_ca)  # the same paths, new contents
    app.reload_certificates()
    assert await get_status(app, only_new) == 200
    newcomer = await FakeCharger(wss(app), "CP003").connect(ssl=only_new)
    assert (await newcomer.boot()).status == "Accepted"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get_status(app, pki.client_context())
    # The connection opened before the reload goes on.
    assert (await charger.boot()).status == "Accepted"

    # Unusable files: one error line, and the certificate in use stays.
    Path(files["key"]).write_text("not a key\n")
    caplog.clear()
    app.reload_certificates()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and files["key"] in errors[0].getMessage()
    assert await get_status(app, only_new) == 200
    await newcomer.close()
    await charger.close()


# -- start-up errors -------------------------------------------------------------------------


def test_unusable_tls_files_are_one_line_errors(pki: Pki, tmp_path: Path) -> None:
    good = pki.server_files()
    other = pki.server_files("other")
    cases = {
        "missing cert": (
            {**good, "cert": str(tmp_path / "nope.crt")},
            "server.tls.cert",
            "nope.crt",
        ),
        "mismatched key": ({**good, "key": other["key"]}, "server.tls.key", "does not match"),
        "cert is a key": ({**good, "cert": good["key"]}, "server.tls.cert", "no PEM certificate"),
        "bad client CA": ({**good, "clientCa": good["key"]}, "server.tls.clientCa", "no PEM"),
    }
    for name, (tls, field, words) in cases.items():
        with pytest.raises(TlsError) as caught:
            ControllerApp(tls_config(tls), db_path=tmp_path / f"{name}.db")
        assert len(caught.value.problems) == 1, name
        assert caught.value.problems[0].startswith(field + ":"), caught.value.problems
        assert words in caught.value.problems[0], caught.value.problems


def test_cli_exits_2_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((ROOT / "config.json").read_text())
    missing = tmp_path / "missing.key"
    data["server"] = {"tls": {"cert": str(tmp_path / "a.crt"), "key": str(missing)}}
    (tmp_path / "a.crt").write_text("x")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    code = cli.main(["--config", str(path), "--db", str(tmp_path / "c.db")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "server.tls.key" in err[0] and str(missing) in err[0]
    assert "Traceback" not in err[0]


# -- the handshake timeout counts the TLS handshake --------------------------------------


async def test_tls_handshake_counts_against_the_handshake_timeout(
    pki: Pki, start_controller: Any
) -> None:
    """Connections that never complete their TLS handshake are closed after the timeout and
    free their place: with room for one connection per port, a charger and a REST client
    still get in afterwards."""
    app: ControllerApp = await start_controller(
        tls_config(pki.server_files(), handshakeTimeout=0.3, maxConnections=1)
    )
    context = pki.client_context()
    loop = asyncio.get_running_loop()
    for port in (app.ocpp_port, app.rest_port):
        # Nothing, the start of a ClientHello, plain HTTP.
        for start in (b"", b"\x16\x03\x01\x02\x00\x01", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
            # Before the connection exists: the server's timer starts when it accepts it,
            # which may be before open_connection returns here.
            opened = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(start)
            assert await read_until_closed(reader) == b""
            if len(start) < 10:
                assert loop.time() - opened >= 0.3
            writer.close()
    charger = await FakeCharger(wss(app), "CP001").connect(ssl=context)
    assert (await charger.boot()).status == "Accepted"
    assert await get_status(app, context) == 200
    # Over TLS too, a charger that closes is gone at once (no half-close to wait out).
    async with asyncio.timeout(CLOSE_TIMEOUT / 2):
        await charger.close()


# -- SIGHUP in the real process ------------------------------------------------------------

READY = re.compile(r"(REST API on https|OCPP 1\.6J on wss)://[^:]+:(\d+)\S* \((.*)\)")


async def test_sighup_reloads_the_certificates_of_the_running_controller(
    pki: Pki, tmp_path: Path
) -> None:
    """``ev-controller`` as operators run it: the start-up log says which port is TLS and
    whether client certificates are required; SIGHUP reloads; SIGTERM still stops it."""
    files = pki.server_files()
    data = json.loads((ROOT / "config.json").read_text())
    data["server"] = {"tls": files, "restTls": pki.server_files("rest")}
    (tmp_path / "config.json").write_text(json.dumps(data))
    process = await asyncio.create_subprocess_exec(
        *controller_command(tmp_path / "config.json", tmp_path / "c.db"),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr

    async def line_with(words: str) -> str:
        async with asyncio.timeout(30):
            while line := (await stderr.readline()).decode():
                if words in line:
                    return line
        raise AssertionError(f"the controller exited without logging {words!r}")

    try:
        ports: dict[str, tuple[int, str]] = {}
        while len(ports) < 2:
            match = READY.search(await line_with(" on "))
            if match:
                ports[match.group(1)] = (int(match.group(2)), match.group(3))
        ocpp_port, ocpp_mode = ports["OCPP 1.6J on wss"]
        rest_port, rest_mode = ports["REST API on https"]
        assert ocpp_mode.startswith("TLS, no client certificates;"), ocpp_mode
        assert rest_mode.startswith("TLS, no client certificates;"), rest_mode

        new_ca = trustme.CA()
        url = f"wss://127.0.0.1:{ocpp_port}/ocpp"
        await refused_by_tls(f"{url}/CP001", pki.client_context(trust=new_ca))
        pki.server_files("server", ca=new_ca)
        process.send_signal(signal.SIGHUP)
        await line_with("server.tls: TLS certificates reloaded")
        charger = await FakeCharger(url, "CP001").connect(ssl=pki.client_context(trust=new_ca))
        assert (await charger.boot()).status == "Accepted"
        await charger.close()
        # The REST port has its own files (server.restTls), which did not change.
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"https://127.0.0.1:{rest_port}/station/status", ssl=pki.client_context()
            ) as response,
        ):
            assert response.status == 200
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
