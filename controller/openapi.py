"""The OpenAPI 3.1 document of the REST API (docs/api.md, "API description").

Generated, never written by hand: each route of ``controller.rest.routes()`` names the
pydantic models its handler validates the body and the query with, and the TypedDict of its
answer (``controller.views``); pydantic turns those same types into JSON Schema. The answers
that every route of a kind can give (401 without a token, 415 for a body that is not JSON,
503 when the server is at its cap, ...) are added here, from what ``controller.rest_auth``,
``controller.listener`` and aiohttp do, so that a client generated from the document knows
every status it can meet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from controller.rest_auth import Access
from controller.views import ErrorView

if TYPE_CHECKING:
    from controller.rest import Route

TITLE: Final = "EV station power controller"
VERSION: Final = "1"
REF_TEMPLATE: Final = "#/components/schemas/{model}"
SECURITY_SCHEME: Final = "apiToken"

DESCRIPTION: Final = """\
The station's REST API: sessions, the station's status and journal, metrics.
Units: power in kW, energy in kWh, times in UTC. Errors are JSON objects with `error` (a
stable code), `message` (one sentence) and `details` (one `{field, message}` per bad field).

Access: with API tokens configured (`api.tokens`), a request carries
`Authorization: Bearer <token>`; a `read` token may use the routes marked read, an `operate`
token all of them. Without tokens, reads are open and changes are accepted from the
controller's own machine (loopback) only. The dashboard's files, this document and
`/healthz` are always open.
"""

_PATH_PARAMETER = re.compile(r"{(\w+)}")

_PATH_NAMES: Final = {"session_id": "sessionId"}


def _description(route: Route) -> str:
    role = {
        Access.OPEN: "open to anyone",
        Access.READ: "role `read`",
        Access.OPERATE: "role `operate`",
    }[route.access]
    return f"Access: {role}."


def _error_answers(route: Route) -> dict[int, str]:
    """Every error status the route can answer, with what it means."""
    answers: dict[int, str] = {}
    if route.body is not None or route.query is not None:
        answers[400] = "a field or query parameter is missing, of the wrong type or out of bounds"
        if route.body is not None:
            answers[400] = "the body is not a JSON object, or " + answers[400]
    if route.access is not Access.OPEN:
        answers[401] = "no token, or an unknown one (only with tokens configured)"
    if route.access is Access.OPERATE:
        answers[403] = "a read token; or, without tokens configured, a change from another machine"
    if route.body is not None:
        answers[413] = "the body is over 1 MiB"
        answers[415] = "the body's Content-Type is not application/json"
    if route.access is not Access.OPEN:
        answers[429] = "10 unknown tokens within 60 s from this address: refused for a while"
    answers[503] = (
        "too many requests in progress (Retry-After); or the database cannot be written or read"
    )
    answers.update(route.errors)
    return dict(sorted(answers.items()))


def _parameters(route: Route, schemas: Schemas) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"the {_PATH_NAMES.get(name, name)}",
            "schema": {"type": "string"},
        }
        for name in _PATH_PARAMETER.findall(route.path)
    ]
    if route.query is not None:
        query = schemas.inline(route.query)
        required = set(query.get("required", ()))
        for name, schema in query["properties"].items():
            entry = _without_null(schema)
            description = entry.pop("description", None)
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    **({"description": description} if description else {}),
                    "schema": entry,
                }
            )
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or text, never JSON null: ``anyOf [X, null]`` -> ``X``."""
    entry = dict(schema)
    choices = [c for c in entry.pop("anyOf", []) if c.get("type") != "null"]
    if len(choices) == 1:
        entry.update(choices[0])
        if entry.get("default", "") is None:
            del entry["default"]
    elif choices:
        entry["anyOf"] = choices
    return entry


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(route: Route, schemas: Schemas) -> dict[str, Any]:
    success = route.success
    if success.media_type == "application/json":
        content = _json_content(schemas.of(success.shape, "serialization"))
    else:
        content = {success.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {
        str(success.status): {"description": success.description, "content": content}
    }
    error = _json_content(schemas.of(ErrorView, "serialization"))
    for status, meaning in _error_answers(route).items():
        responses[str(status)] = {"description": meaning, "content": error}
    operation: dict[str, Any] = {
        "summary": route.summary,
        "description": _description(route),
        "operationId": _operation_id(route),
        "parameters": _parameters(route, schemas),
        "responses": responses,
        # Open routes need nothing; the others a bearer token once tokens are configured.
        "security": [] if route.access is Access.OPEN else [{SECURITY_SCHEME: []}],
    }
    if route.body is not None:
        body = schemas.of(route.body, "validation")
        operation["requestBody"] = {
            "required": not route.body_optional,
            "description": route.body.__doc__ or "",
            "content": _json_content(body),
        }
    return operation


def _operation_id(route: Route) -> str:
    """``POST /sessions/{session_id}/stop`` -> ``postSessionsOneStop``; ``GET /`` -> ``getRoot``."""
    words = re.findall(r"[a-z]+", route.path.replace("{session_id}", "one")) or ["root"]
    return route.method.lower() + "".join(word.capitalize() for word in words)


class Schemas:
    """JSON Schema of every type the route table names, with shared definitions."""

    def __init__(self, table: Iterable[Route]) -> None:
        wanted: list[tuple[Any, JsonSchemaMode]] = [(ErrorView, "serialization")]
        for route in table:
            if route.success.media_type == "application/json":
                wanted.append((route.success.shape, "serialization"))
            if route.body is not None:
                wanted.append((route.body, "validation"))
        inputs = [(shape, mode, TypeAdapter(shape)) for shape, mode in dict.fromkeys(wanted)]
        schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE)
        self._schemas: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]] = schemas
        self.definitions: dict[str, Any] = definitions.get("$defs", {})

    def of(self, shape: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        return self._schemas[(shape, mode)]

    @staticmethod
    def inline(shape: Any) -> dict[str, Any]:
        """The schema of a query model, whole: its fields become parameters."""
        return TypeAdapter(shape).json_schema(mode="validation")


def openapi_document(table: Iterable[Route]) -> dict[str, Any]:
    routes = list(table)
    schemas = Schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas.definitions,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token made with `ev-controller token`",
                }
            },
        },
    }
