"""The OpenAPI 3.1 document, generated from the app's own route table.

`build_document` walks `app.routes`: every path, method and path parameter comes from there, and
a route with no `Operation` stops it with `UndocumentedRoute`, so an endpoint cannot ship
undescribed. An `Operation` says what a route answers and which error codes it raises; the
schemas it names are built beside the code they describe (`parse_input` in each job type, the
views in service/views.py and service/batches/engine.py), from the same constants and settings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.routing import BaseRoute, Route

Schema = dict[str, Any]
Endpoint = Callable[..., Any]

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
# Checked by `auth.authenticate` before anything else, on every route that needs a client.
AUTH_ERRORS: Mapping[int, tuple[str, ...]] = {
    401: ("UNAUTHORIZED",),
    429: ("RATE_LIMITED",),
    503: ("SERVICE_UNAVAILABLE",),
}
# `service.admission.RateDecision.headers`: on every response to a request charged to a client.
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


class UndocumentedRoute(LookupError):
    """A route of the app that no `Operation` describes."""


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def closed(properties: Mapping[str, Schema], *, optional: Collection[str] = ()) -> Schema:
    """An object with exactly these properties, all required except `optional`."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def error_schema(codes: Iterable[str]) -> Schema:
    """`{"error": {code, message, field}}` as `app.error_response` writes it, with these codes."""
    error = closed(
        {
            "code": {"type": "string", "enum": sorted(set(codes))},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"]},
        }
    )
    return closed({"error": error})


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "header"
    schema: Schema
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """One successful answer: its status, body per media type, headers and links."""

    status: int
    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)
    links: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    summary: str
    replies: tuple[Reply, ...]
    # status -> the `error.code`s a route answers with it (beyond AUTH_ERRORS when authenticated)
    errors: Mapping[int, Collection[str]] = field(default_factory=dict)
    authenticated: bool = True
    body: Mapping[str, Schema] | None = None  # media type -> schema
    params: tuple[Param, ...] = ()
    description: str = ""


def build_document(
    routes: Iterable[BaseRoute],
    operations: Mapping[Endpoint, Operation],
    *,
    path_patterns: Mapping[str, str],
    title: str,
    version: str,
) -> Schema:
    """The whole document; `UndocumentedRoute` for a route `operations` does not describe, or
    with a path parameter `path_patterns` has no regex for."""
    paths: dict[str, Schema] = {}
    for route in routes:
        if not isinstance(route, Route):
            raise UndocumentedRoute(f"{route!r} is not a plain Route; describe it or remove it")
        operation = operations.get(route.endpoint)
        if operation is None:
            raise UndocumentedRoute(
                f"{route.path} ({route.endpoint.__qualname__}) has no Operation"
            )
        item = paths.setdefault(route.path, {})
        for method in sorted((route.methods or set()) - {"HEAD"}):
            item[method.lower()] = _operation(route, operation, path_patterns)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the API key"}
            }
        },
    }


def _operation(route: Route, operation: Operation, path_patterns: Mapping[str, str]) -> Schema:
    parameters = []
    for name in route.param_convertors:
        if name not in path_patterns:
            raise UndocumentedRoute(f"{route.path}: no pattern for the path parameter {name!r}")
        schema = {"type": "string", "pattern": path_patterns[name]}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    parameters += [
        {"name": p.name, "in": p.where, "required": False, "schema": p.schema}
        | ({"description": p.description} if p.description else {})
        for p in operation.params
    ]
    described: Schema = {
        "operationId": route.endpoint.__name__,
        "summary": operation.summary,
        "parameters": parameters,
        "responses": _responses(operation),
    }
    if operation.description:
        described["description"] = operation.description
    if operation.body is not None:
        content = {media: {"schema": schema} for media, schema in operation.body.items()}
        described["requestBody"] = {"required": True, "content": content}
    described["security"] = [{"bearer": []}] if operation.authenticated else []
    return described


def _responses(operation: Operation) -> Schema:
    rate_headers = _rate_headers() if operation.authenticated else {}
    responses: Schema = {}
    for reply in operation.replies:
        response: Schema = {"description": reply.description}
        if reply.content:
            response["content"] = {m: {"schema": s} for m, s in reply.content.items()}
        headers = {**rate_headers, **reply.headers}
        if headers:
            response["headers"] = headers
        if reply.links:
            response["links"] = dict(reply.links)
        responses[str(reply.status)] = response
    errors: dict[int, set[str]] = {}
    for table in (AUTH_ERRORS if operation.authenticated else {}, operation.errors):
        for status, codes in table.items():
            errors.setdefault(status, set()).update(codes)
    for status, codes in sorted(errors.items()):
        response = {
            "description": HTTPStatus(status).phrase,
            "content": {JSON: {"schema": error_schema(codes)}},
        }
        if status == 429:  # `app._api_error` adds it to every TooManyRequests
            response["headers"] = {**rate_headers, "Retry-After": retry_after_header()}
        elif status == 503:  # and to every ServiceUnavailable; no charge was made, so no RateLimit
            response["headers"] = {"Retry-After": retry_after_header()}
        responses[str(status)] = response
    return responses


def retry_after_header() -> Schema:
    return _header("seconds to wait before trying again")


def _rate_headers() -> Schema:
    return {name: _header("the client's request rate") for name in RATE_LIMIT_HEADERS} | {
        "RateLimit-Policy": _header("burst;w=window seconds", schema={"type": "string"})
    }


def _header(description: str, *, schema: Schema | None = None) -> Schema:
    return {
        "description": description,
        "required": True,
        "schema": schema or {"type": "string", "pattern": "^[0-9]+$"},
    }
