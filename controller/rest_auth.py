"""Who may use the REST API, and what a browser may do with it (docs/security-rest.md).

Every route declares what it needs: ``OPEN`` (the dashboard's files, ``/healthz``),
``READ`` or ``OPERATE``. With tokens configured a request carries
``Authorization: Bearer <token>``; a ``read`` token may use the GETs, an ``operate`` token
everything. Without any token the API is as open as it always was for reads, and changes
come only from this machine. The guard middleware decides before any handler runs, so a
refused request reads no body and changes nothing.

Tokens are compared by their SHA-256, each presented token against every configured one
with ``hmac.compare_digest``: how long the check takes says nothing about which token, or
how much of one, was right. Failed authentications are counted per client address
(``controller.throttle.FailureThrottle``): after too many the address gets 429 for a while
without any check.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from controller.config import ApiConfig, ApiTokenConfig
from controller.rest_schemas import ApiError
from controller.throttle import FailureThrottle

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(enum.Enum):
    OPEN = "open"  # no token ever: nothing in it a stranger may not see
    READ = "read"
    OPERATE = "operate"


# What every route answers with; the CSP keeps the dashboard's own files the only code
# and style a page of ours runs, and no other site may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CORS_METHODS = "GET, HEAD, POST, PUT, DELETE"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "600"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPE = "application/json"

HOW_TO_CONFIGURE = (
    "create a token with 'ev-controller token --name NAME --role operate' and add the "
    "entry it prints to api.tokens"
)


@dataclass(frozen=True)
class Credential:
    name: str
    role: Access
    digest: bytes  # SHA-256 of the token


class TokenBook:
    """The configured tokens, by their SHA-256."""

    def __init__(self, tokens: Iterable[ApiTokenConfig]) -> None:
        self._credentials = tuple(
            Credential(t.name, Access(t.role), bytes.fromhex(t.sha256)) for t in tokens
        )

    def __bool__(self) -> bool:
        return bool(self._credentials)

    def __len__(self) -> int:
        return len(self._credentials)

    def count(self, role: Access) -> int:
        return sum(1 for c in self._credentials if c.role is role)

    def identify(self, presented: str) -> Credential | None:
        """The credential of a presented token, or None. Every configured hash is compared,
        in constant time, whatever matched before: no early exit."""
        digest = bytes.fromhex(token_sha256(presented))
        found: Credential | None = None
        for credential in self._credentials:
            if hmac.compare_digest(digest, credential.digest):
                found = credential
        return found


def token_sha256(token: str) -> str:
    """What the config keeps of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(name: str, role: str) -> tuple[str, ApiTokenConfig]:
    """A new random token (256 bits, URL-safe) and its config entry; ValidationError for a
    name or role the config would refuse."""
    token = secrets.token_urlsafe(32)
    entry = ApiTokenConfig.model_validate(
        {"name": name, "role": role, "sha256": token_sha256(token)}
    )
    return token, entry


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for no header, another
    scheme or an empty token."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def is_loopback(address: str | None) -> bool:
    """Whether a client address is this machine: 127.0.0.0/8, ::1, or 127.x mapped into
    IPv6. Anything unparsable (a Unix socket has no address) is not."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=headers)


def describe_mode(book: TokenBook) -> str:
    """The start-up log line: which mode the API is in."""
    if not book:
        return (
            "REST API without tokens: reads are open to every client, changes are accepted "
            "only from this machine (loopback); to serve a network, " + HOW_TO_CONFIGURE
        )
    return (
        f"REST API with {len(book)} token(s) ({book.count(Access.READ)} read, "
        f"{book.count(Access.OPERATE)} operate): every request but the dashboard's files "
        "and /healthz needs one"
    )


Rules = Mapping[tuple[str, str], Access]


def required_access(request: web.Request, rules: Rules) -> Access:
    """What a request needs: its route's rule; for no route (404, 405), what its method
    would need, so that a stranger learns nothing from which paths exist."""
    method = "GET" if request.method == "HEAD" else request.method
    resource = request.match_info.route.resource
    if resource is not None:
        rule = rules.get((method, resource.canonical))
        if rule is not None:
            return rule
    return Access.OPERATE if method in WRITE_METHODS else Access.READ


# Who made a request, for the journal: the token's name, or without tokens the address.
CALLER = web.RequestKey("caller", str)

MISSING_TOKEN = ApiError(
    401, "unauthorized", "this request needs an API token: send 'Authorization: Bearer <token>'"
)
UNKNOWN_TOKEN = ApiError(401, "invalid_token", "the API token is not known")
NOT_FROM_HERE = ApiError(
    403,
    "forbidden",
    "changes are accepted only from this machine while no API token is configured: "
    + HOW_TO_CONFIGURE,
)
NOT_JSON = ApiError(
    415,
    "unsupported_media_type",
    "Content-Type: a request body must be sent as application/json",
    [{"field": "Content-Type", "message": "must be application/json"}],
)


def _wrong_role(credential: Credential) -> ApiError:
    return ApiError(
        403,
        "forbidden",
        f"the token {credential.name!r} may only read; this request needs a token with "
        "role 'operate'",
    )


def _blocked(seconds: int) -> ApiError:
    return ApiError(
        429,
        "too_many_failures",
        f"too many failed authentications from this address; retry in {seconds} s",
    )


def guard(api: ApiConfig, rules: Rules, now: Callable[[], float]) -> Middleware:
    """The middleware that lets a request through to its handler, or answers it itself:
    a CORS preflight, 429, 401, 403 or 415 (in that order of checks)."""
    book = TokenBook(api.tokens)
    failures = FailureThrottle(log, "REST authentications")
    origins = frozenset(api.cors_origins)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and _is_preflight(request, origins):
            # A preflight carries no credentials; the real request that follows does.
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Headers": CORS_HEADERS,
                    "Access-Control-Max-Age": CORS_MAX_AGE,
                },
            )
        access = required_access(request, rules)
        if access is Access.OPEN:
            return await handler(request)
        address = request.remote or "unknown"
        if book:
            moment = now()
            if failures.is_blocked(address, moment):
                seconds = max(1, math.ceil(failures.retry_after(address, moment)))
                return error_response(_blocked(seconds), {"Retry-After": str(seconds)})
            presented = bearer_token(request.headers.get("Authorization"))
            if presented is None:
                return error_response(MISSING_TOKEN, {"WWW-Authenticate": "Bearer"})
            credential = book.identify(presented)
            if credential is None:
                failures.record_failure(address, moment)
                return error_response(
                    UNKNOWN_TOKEN, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                )
            if access is Access.OPERATE and credential.role is not Access.OPERATE:
                return error_response(_wrong_role(credential))
            request[CALLER] = credential.name
        elif access is Access.OPERATE and not is_loopback(request.remote):
            return error_response(NOT_FROM_HERE)
        else:
            request[CALLER] = address
        if (
            request.method in WRITE_METHODS
            and request.body_exists
            and request.content_type != JSON_TYPE
        ):
            # So that no web page can send a change as a "simple" cross-site request.
            return error_response(NOT_JSON)
        return await handler(request)

    log.info("%s", describe_mode(book))
    if origins:
        log.info("REST API: browsers may call it from %s", ", ".join(sorted(origins)))
    return check


def _is_preflight(request: web.Request, origins: frozenset[str]) -> bool:
    return (
        request.headers.get("Origin") in origins
        and "Access-Control-Request-Method" in request.headers
    )


def response_headers(
    api: ApiConfig,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook: the security headers on every answer, and the CORS
    headers on answers to a listed origin."""
    origins = frozenset(api.cors_origins)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not origins:
            return
        vary = response.headers.get("Vary")
        if vary is None:
            response.headers["Vary"] = "Origin"
        elif "origin" not in vary.lower():
            response.headers["Vary"] = vary + ", Origin"
        origin = request.headers.get("Origin")
        if origin is not None and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Retry-After, WWW-Authenticate"

    return add_headers
