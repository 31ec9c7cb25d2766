"""The OpenAPI 3.1 document, derived from the app's routes and the models they declare.

Each route module says, next to its code, what a route takes and answers: `@documented(...)`
(service/api/operations.py) attaches an `Operation`: its body and reply models, its parameters,
the error codes it raises.
`build_document` walks `app.routes`: every path, method and path parameter comes from there, a
route with no `Operation` stops it with `UndocumentedRoute`, and every model any operation names
becomes a named component under `components/schemas`, referred to by `$ref`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.routing import BaseRoute, Route

from service.api.error_body import error_model
from service.api.naming import REF, name_union_members
from service.api.operations import JSON, Body, Named, Operation, Schema, operation_of
from service.config import Settings
from service.shapes.fields import schema_generator

OPENAPI_VERSION = "3.1.0"
# Checked by `auth.authenticate` before anything else, on every route that needs a client.
AUTH_ERRORS: Mapping[int, tuple[str, ...]] = {
    401: ("UNAUTHORIZED",),
    429: ("RATE_LIMITED",),
    503: ("SERVICE_UNAVAILABLE",),
}
# `service.api.admission.RateDecision.headers`: on every response to a request charged to a client.
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


class UndocumentedRoute(LookupError):
    """A route of the app that no `Operation` describes."""


def build_document(
    routes: Iterable[BaseRoute],
    settings: Settings,
    *,
    path_patterns: Mapping[str, str],
    title: str,
    version: str,
    webhooks: Mapping[str, Body] | None = None,
) -> Schema:
    """The whole document; `UndocumentedRoute` for a route no `Operation` describes, or with a
    path parameter `path_patterns` has no regex for. `webhooks` are the events pixhook sends,
    by type, each with the body a receiver gets."""
    components = _Components(settings)
    described = [_route(route) for route in routes]
    _paths(described, path_patterns, components)  # collects the models
    _webhooks(webhooks or {}, components)
    components.generate()
    paths = _paths(described, path_patterns, components)
    document: Schema = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
    }
    if webhooks:
        document["webhooks"] = _webhooks(webhooks, components)
    return document | {
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the API key"}
            },
        },
    }


def _webhooks(events: Mapping[str, Body], components: _Components) -> Schema:
    """One POST per event type, as OpenAPI 3.1's `webhooks` describes a callback's request."""
    return {
        event_type: {
            "post": {
                "operationId": event_type,
                "summary": f"`{event_type}`, signed (Standard Webhooks)",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": components.ref(body, "serialization")}},
                },
                "responses": {"2XX": {"description": "received; anything else is retried"}},
            }
        }
        for event_type, body in events.items()
    }


def _paths(
    described: list[tuple[Route, Operation]],
    path_patterns: Mapping[str, str],
    components: _Components,
) -> Schema:
    paths: dict[str, Schema] = {}
    for route, operation in described:
        item = paths.setdefault(route.path, {})
        for method in sorted((route.methods or set()) - {"HEAD"}):
            item[method.lower()] = _operation(route, operation, path_patterns, components)
    return paths


def _route(route: BaseRoute) -> tuple[Route, Operation]:
    if not isinstance(route, Route):
        raise UndocumentedRoute(f"{route!r} is not a plain Route; describe it or remove it")
    operation = operation_of(route.endpoint)
    if operation is None:
        raise UndocumentedRoute(f"{route.path} ({route.endpoint.__qualname__}) has no Operation")
    return route, operation


class _Components:
    """The named schemas the operations refer to. The operations are walked twice: first to
    collect every model they name, which one generator then turns into schemas (so each model
    is named once, and `$ref`s say `#/components/schemas/<Model>`); then to write them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._wanted: dict[tuple[Any, JsonSchemaMode], str | None] = {}
        self._refs: dict[tuple[Any, JsonSchemaMode], Schema] = {}
        self.schemas: dict[str, Schema] = {}

    def ref(self, body: Body, mode: JsonSchemaMode) -> Schema:
        """Before `generate`, note what `body` needs; after it, the `$ref` to `body`."""
        if isinstance(body, dict):
            return body
        if isinstance(body, Named):
            key: tuple[Any, JsonSchemaMode] = (body.shape, mode)
            self._wanted[key] = body.name
        else:
            key = (body, mode)
            self._wanted.setdefault(key, None)
        return self._refs.get(key, {})

    def generate(self) -> None:
        generator = schema_generator(self._settings)(ref_template=REF)
        inputs = [(key, key[1], TypeAdapter(key[0]).core_schema) for key in self._wanted]
        by_input, definitions = generator.generate_definitions(inputs)
        self.schemas = {str(name): schema for name, schema in definitions.items()}
        for key, name in self._wanted.items():
            generated = by_input[(key, key[1])]
            if name is None:  # a model: `generated` is the $ref its definition is named by
                self._refs[key] = generated
            else:  # a union of models, named here
                self.schemas[name] = generated
                self._refs[key] = {"$ref": REF.format(model=name)}
        self.schemas = name_union_members(self.schemas)


def _operation(
    route: Route,
    operation: Operation,
    path_patterns: Mapping[str, str],
    components: _Components,
) -> Schema:
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
        "responses": _responses(route.endpoint.__name__, operation, components),
    }
    if operation.description:
        described["description"] = operation.description
    if operation.body is not None:
        content = {
            media: {"schema": components.ref(body, "validation")}
            for media, body in operation.body.items()
        }
        described["requestBody"] = {"required": True, "content": content}
    described["security"] = [{"bearer": []}] if operation.authenticated else []
    return described


def _responses(operation_id: str, operation: Operation, components: _Components) -> Schema:
    rate_headers = _rate_headers() if operation.authenticated else {}
    responses: Schema = {}
    for reply in operation.replies:
        response: Schema = {"description": reply.description}
        if reply.content:
            response["content"] = {
                media: {"schema": components.ref(body, "serialization")}
                for media, body in reply.content.items()
            }
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
        body = error_model(operation_id, status, codes)
        schema = components.ref(body, "serialization")
        response = {"description": HTTPStatus(status).phrase, "content": {JSON: {"schema": schema}}}
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
