"""`/v1/endpoints`: URLs that receive a client's events, with their secrets, tests and stats."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.authentication import client_of
from service.api.bodies import read_json
from service.api.client_routes import ClientRoute
from service.api.endpoint_input import (
    EndpointChange,
    EndpointFields,
    NewEndpoint,
    merged_headers,
    parse_endpoint_fields,
)
from service.api.endpoint_input import resolved_kind as kind_of
from service.api.endpoint_view_models import (
    CreatedEndpoint,
    EndpointList,
    EndpointSecret,
    EndpointStats,
    EndpointView,
    RotatedSecret,
    TestSend,
)
from service.api.endpoint_views import endpoint_view, stats_view
from service.api.idempotency import idempotent
from service.api.operations import (
    BODY_ERRORS,
    IDEMPOTENCY_ERRORS,
    JSON,
    REPLAYED,
    SHAPE_ERRORS,
    URL_ERRORS,
    Operation,
    Reply,
    documented,
    idempotency_key,
)
from service.errors import InvalidInput, NotFound
from service.jobs.views import iso
from service.runtime import Runtime, runtime
from webhooks import Endpoint, EndpointStore, Sealer, new_endpoint_id, reenabled

_ENDPOINT = EndpointView
_MISSING = {404: ("ENDPOINT_NOT_FOUND",)}
_FIELD_ERRORS = (*SHAPE_ERRORS, *URL_ERRORS, "UNKNOWN_EVENT_TYPE", "UNKNOWN_JOB_TYPE") + (
    "INVALID_HEADER",
    "INVALID_TEMPLATE",
)


@documented(
    Operation(
        "Add an endpoint: a URL that receives the client's events that match its filters",
        (
            Reply(
                201,
                "created; the only reply that carries its secret, but GET .../secret",
                {JSON: CreatedEndpoint},
                REPLAYED,
            ),
        ),
        body={JSON: NewEndpoint},
        params=(idempotency_key(),),
        errors={
            **BODY_ERRORS,
            409: (*IDEMPOTENCY_ERRORS, "IDEMPOTENCY_UNREADABLE"),
            422: (*_FIELD_ERRORS, "TOO_MANY_ENDPOINTS", "INVALID_IDEMPOTENCY_KEY"),
        },
    )
)
async def create_endpoint(request: Request) -> Response:
    rt = runtime(request)
    client = client_of(request)
    # The reply carries the new signing secret: kept for the retries only sealed.
    limit = rt.settings.limits.max_request_bytes
    return await idempotent(request, rt, client, limit, _create_endpoint, sealer=rt.sealer)


async def _create_endpoint(request: Request) -> JSONResponse:
    client = client_of(request)
    rt = runtime(request)
    fields = parse_endpoint_fields(await _body(request, rt), rt.settings, creating=True)
    if await rt.endpoints.count(client.id) >= rt.settings.limits.max_endpoints:
        raise InvalidInput(
            f"a client has at most {rt.settings.limits.max_endpoints} endpoints; delete one first",
            code="TOO_MANY_ENDPOINTS",
        )
    assert fields.url is not None  # parse_endpoint_fields requires it when creating
    secret, sealed_secrets = rt.endpoints.first_secret()
    now = time.time()
    blank = Endpoint(
        id=new_endpoint_id(),
        owner=client.id,
        url=fields.url,
        kind=kind_of(fields, fields.url, None),
        created_at=now,
        updated_at=now,
        secrets=sealed_secrets,
    )
    endpoint = _changed(rt.sealer, blank, fields)
    await rt.endpoints.save(endpoint)
    view = endpoint_view(endpoint, rt.endpoints, rt.settings.api.public_url)
    # The only time the secret comes with the endpoint; GET .../secret shows it again.
    return JSONResponse(CreatedEndpoint.render({**view, "secret": secret}), status_code=201)


@documented(
    Operation(
        "The client's endpoints, oldest first",
        (Reply(200, "all of them", {JSON: EndpointList}),),
    )
)
async def list_endpoints(request: Request) -> JSONResponse:
    client = client_of(request)
    rt = runtime(request)
    endpoints = await rt.endpoints.owned_by(client.id)
    views = [endpoint_view(e, rt.endpoints, rt.settings.api.public_url) for e in endpoints]
    return JSONResponse(EndpointList.render({"data": views}))


@documented(
    Operation(
        "An endpoint; header values show only their last characters",
        (Reply(200, "the endpoint", {JSON: _ENDPOINT}),),
        errors=_MISSING,
    )
)
async def get_endpoint(request: Request) -> JSONResponse:
    rt = runtime(request)
    endpoint = await _own_endpoint(request, rt.endpoints)
    return JSONResponse(endpoint_view(endpoint, rt.endpoints, rt.settings.api.public_url))


@documented(
    Operation(
        "Change an endpoint; `headers` is a merge patch (null removes one), `enabled: true` "
        "re-enables a disabled one",
        (Reply(200, "the endpoint", {JSON: _ENDPOINT}),),
        body={JSON: EndpointChange},
        errors={**BODY_ERRORS, **_MISSING, 422: _FIELD_ERRORS},
    )
)
async def update_endpoint(request: Request) -> JSONResponse:
    rt = runtime(request)
    current = await _own_endpoint(request, rt.endpoints)
    fields = parse_endpoint_fields(await _body(request, rt), rt.settings, creating=False)
    updated = await rt.endpoints.update(
        current.owner, current.id, lambda endpoint: _changed(rt.sealer, endpoint, fields)
    )
    if updated is None:
        raise _not_found(current.id)
    if fields.enabled and not current.enabled:
        # Re-enabled: its failing streak starts over, or the next failure would disable it again.
        await rt.endpoints.forget_failures(current.id)
    return JSONResponse(endpoint_view(updated, rt.endpoints, rt.settings.api.public_url))


@documented(
    Operation(
        "Delete an endpoint; its pending deliveries die unsent",
        (Reply(204, "deleted"),),
        errors=_MISSING,
    )
)
async def delete_endpoint(request: Request) -> Response:
    endpoints = runtime(request).endpoints
    endpoint = await _own_endpoint(request, endpoints)
    await endpoints.delete(endpoint.owner, endpoint.id)
    return Response(status_code=204)


@documented(
    Operation(
        "Send a signed `ping` event now and answer with what the endpoint did",
        (Reply(200, "the attempt", {JSON: TestSend}),),
        errors=_MISSING,
    )
)
async def ping_endpoint(request: Request) -> JSONResponse:
    """Send a signed `ping` now, as a delivery is sent, and answer with what the endpoint did."""
    rt = runtime(request)
    endpoint = await _own_endpoint(request, rt.endpoints)
    event, result = await rt.engine.ping(endpoint)
    return JSONResponse(
        TestSend.render(
            {
                "ok": result.ok,
                "event_id": event.id,
                "status_code": result.status_code,
                "duration_ms": round(result.duration_ms, 2),
                "error_code": result.error_code,
                "error_message": result.error_message,
                "response_excerpt": result.response_excerpt,
            }
        )
    )


@documented(
    Operation(
        "Attempts, success rate, latency percentiles and the last failure",
        (Reply(200, "the stats", {JSON: EndpointStats}),),
        errors=_MISSING,
    )
)
async def endpoint_stats(request: Request) -> JSONResponse:
    endpoints = runtime(request).endpoints
    endpoint = await _own_endpoint(request, endpoints)
    health = await endpoints.health(endpoint.id)
    return JSONResponse(stats_view(endpoint, health))


@documented(
    Operation(
        "The endpoint's current signing secret",
        (Reply(200, "the secret", {JSON: EndpointSecret}),),
        errors=_MISSING,
    )
)
async def get_endpoint_secret(request: Request) -> JSONResponse:
    endpoints = runtime(request).endpoints
    endpoint = await _own_endpoint(request, endpoints)
    secrets_now = endpoints.signing_secrets(endpoint)
    return JSONResponse(EndpointSecret.render({"secret": secrets_now[0]}))


@documented(
    Operation(
        "A new signing secret; the previous one keeps signing until the overlap ends",
        (Reply(200, "the new secret", {JSON: RotatedSecret}),),
        errors=_MISSING,
    )
)
async def rotate_endpoint_secret(request: Request) -> JSONResponse:
    """A new secret signs from now on; the previous one signs too until the overlap ends, so
    receivers can switch without dropping a webhook."""
    rt = runtime(request)
    endpoint = await _own_endpoint(request, rt.endpoints)
    overlap_s = rt.settings.endpoints.secret_rotation_overlap_s
    rotated = await rt.endpoints.rotate_secret(endpoint.owner, endpoint.id, overlap_s)
    if rotated is None:
        raise _not_found(endpoint.id)
    _, secret = rotated
    expires_at = iso(time.time() + overlap_s)
    return JSONResponse(
        RotatedSecret.render({"secret": secret, "previous_secret_expires_at": expires_at})
    )


def _changed(sealer: Sealer, endpoint: Endpoint, fields: EndpointFields) -> Endpoint:
    """The endpoint with what the request set; fields it left out stay as they were."""
    url = fields.url or endpoint.url
    kind = kind_of(fields, url, endpoint.kind)
    templates: Any = endpoint.templates
    if fields.clear_templates:
        templates = None
    elif fields.templates is not None:
        templates = fields.templates
    if templates is not None and kind != "slack":
        raise InvalidInput(
            "templates format Slack messages: they need an endpoint of kind slack",
            code="INVALID_TEMPLATE",
            field="templates",
        )
    headers = dict(endpoint.headers)
    if fields.headers is not None:
        sealed = {
            name: None if value is None else sealer.seal(value)
            for name, value in fields.headers.items()
        }
        headers = merged_headers(headers, sealed)
    if fields.enabled is True and not endpoint.enabled:
        endpoint = reenabled(endpoint)
    return replace(
        endpoint,
        url=url,
        kind=kind,
        description=_or(fields.description, endpoint.description),
        event_types=_or(fields.event_types, endpoint.event_types),
        job_types=_or(fields.job_types, endpoint.job_types),
        metadata_filter=_or(fields.metadata_filter, endpoint.metadata_filter),
        enabled=_or(fields.enabled, endpoint.enabled),
        headers=headers,
        templates=templates,
        updated_at=time.time(),
    )


def _or(value: Any, current: Any) -> Any:
    return current if value is None else value


async def _body(request: Request, rt: Runtime) -> Any:
    return await read_json(request, rt.settings.limits.max_request_bytes, rt.settings.json_shape)


async def _own_endpoint(request: Request, endpoints: EndpointStore) -> Endpoint:
    endpoint_id = request.path_params["endpoint_id"]
    # Stored under their owner: another client's endpoint is as absent as one that never was.
    endpoint = await endpoints.get(client_of(request).id, endpoint_id)
    if endpoint is None:
        raise _not_found(endpoint_id)
    return endpoint


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"no endpoint {endpoint_id}", code="ENDPOINT_NOT_FOUND", field="id")


routes = [
    ClientRoute("/v1/endpoints", create_endpoint, methods=["POST"]),
    ClientRoute("/v1/endpoints", list_endpoints, methods=["GET"]),
    ClientRoute("/v1/endpoints/{endpoint_id}", get_endpoint, methods=["GET"]),
    ClientRoute("/v1/endpoints/{endpoint_id}", update_endpoint, methods=["PATCH"]),
    ClientRoute("/v1/endpoints/{endpoint_id}", delete_endpoint, methods=["DELETE"]),
    ClientRoute("/v1/endpoints/{endpoint_id}/test", ping_endpoint, methods=["POST"]),
    ClientRoute("/v1/endpoints/{endpoint_id}/stats", endpoint_stats, methods=["GET"]),
    ClientRoute("/v1/endpoints/{endpoint_id}/secret", get_endpoint_secret, methods=["GET"]),
    ClientRoute(
        "/v1/endpoints/{endpoint_id}/secret/rotate", rotate_endpoint_secret, methods=["POST"]
    ),
]
