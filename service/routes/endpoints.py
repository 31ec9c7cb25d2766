"""`/v1/endpoints`: URLs that receive a client's events, with their secrets, tests and stats."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.auth import authenticate, runtime
from service.bodies import read_json
from service.endpoint_input import EndpointFields, merged_headers, parse_endpoint_fields
from service.endpoint_input import resolved_kind as kind_of
from service.endpoint_views import endpoint_view, stats_view
from service.errors import InvalidInput, NotFound
from service.idempotency import idempotent
from service.runtime import Runtime
from service.views import iso
from webhooks.connector import open_session
from webhooks.dispatcher import SIGNING_ERROR
from webhooks.endpoints import PING, Endpoint, new_endpoint_id, reenabled
from webhooks.fanout import Event, body_for
from webhooks.pacing import Pacer
from webhooks.sender import AttemptResult, send
from webhooks.signing import InvalidSecret
from webhooks.slack import SLACK_INTERVAL_S
from webhooks.targets import Refused, Target, endpoint_target, observe_attempt

# A test send to a paced channel waits up to this long for its slot; a longer backlog answers
# CHANNEL_BUSY at once rather than holding the request.
_MAX_PACED_WAIT_S = 10.0
CHANNEL_BUSY = "CHANNEL_BUSY"


async def create_endpoint(request: Request) -> Response:
    rt = runtime(request)
    client = await authenticate(request)
    # The reply carries the new signing secret: kept for the retries only sealed.
    limit = rt.settings.max_request_bytes
    return await idempotent(request, rt, client, limit, _create_endpoint, sealer=rt.sealer)


async def _create_endpoint(request: Request) -> JSONResponse:
    client = await authenticate(request)
    rt = runtime(request)
    fields = parse_endpoint_fields(await _body(request, rt), rt.settings, creating=True)
    if await rt.endpoints.count(client.id) >= rt.settings.max_endpoints:
        raise InvalidInput(
            f"a client has at most {rt.settings.max_endpoints} endpoints; delete one first",
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
    endpoint = _changed(rt, blank, fields)
    await rt.endpoints.save(endpoint)
    view = endpoint_view(endpoint, rt.endpoints, rt.settings.public_url)
    # The only time the secret comes with the endpoint; GET .../secret shows it again.
    return JSONResponse({**view, "secret": secret}, status_code=201)


async def list_endpoints(request: Request) -> JSONResponse:
    client = await authenticate(request)
    rt = runtime(request)
    endpoints = await rt.endpoints.owned_by(client.id)
    views = [endpoint_view(e, rt.endpoints, rt.settings.public_url) for e in endpoints]
    return JSONResponse({"data": views})


async def get_endpoint(request: Request) -> JSONResponse:
    endpoint = await _own_endpoint(request)
    rt = runtime(request)
    return JSONResponse(endpoint_view(endpoint, rt.endpoints, rt.settings.public_url))


async def update_endpoint(request: Request) -> JSONResponse:
    current = await _own_endpoint(request)
    rt = runtime(request)
    fields = parse_endpoint_fields(await _body(request, rt), rt.settings, creating=False)
    updated = await rt.endpoints.update(
        current.owner, current.id, lambda endpoint: _changed(rt, endpoint, fields)
    )
    if updated is None:
        raise _not_found(current.id)
    if fields.enabled and not current.enabled:
        # Re-enabled: its failing streak starts over, or the next failure would disable it again.
        await rt.endpoints.forget_failures(current.id)
    return JSONResponse(endpoint_view(updated, rt.endpoints, rt.settings.public_url))


async def delete_endpoint(request: Request) -> Response:
    endpoint = await _own_endpoint(request)
    await runtime(request).endpoints.delete(endpoint.owner, endpoint.id)
    return Response(status_code=204)


async def ping_endpoint(request: Request) -> JSONResponse:
    """Send a signed `ping` now and answer with what the endpoint did."""
    endpoint = await _own_endpoint(request)
    rt = runtime(request)
    event = Event(
        PING,
        "evt_ping_" + secrets.token_hex(12),
        {"endpoint_id": endpoint.id, "message": "a test event from pixhook"},
    )
    result = await _send_once(rt, endpoint, event)
    await observe_attempt(rt.endpoints, endpoint.id, result, event.id, PING)
    return JSONResponse(
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


async def endpoint_stats(request: Request) -> JSONResponse:
    endpoint = await _own_endpoint(request)
    health = await runtime(request).endpoints.health(endpoint.id)
    return JSONResponse(stats_view(endpoint, health))


async def get_endpoint_secret(request: Request) -> JSONResponse:
    endpoint = await _own_endpoint(request)
    secrets_now = runtime(request).endpoints.signing_secrets(endpoint)
    return JSONResponse({"secret": secrets_now[0]})


async def rotate_endpoint_secret(request: Request) -> JSONResponse:
    """A new secret signs from now on; the previous one signs too until the overlap ends, so
    receivers can switch without dropping a webhook."""
    endpoint = await _own_endpoint(request)
    rt = runtime(request)
    overlap_s = rt.settings.secret_rotation_overlap_s
    rotated = await rt.endpoints.rotate_secret(endpoint.owner, endpoint.id, overlap_s)
    if rotated is None:
        raise _not_found(endpoint.id)
    _, secret = rotated
    return JSONResponse(
        {"secret": secret, "previous_secret_expires_at": iso(time.time() + overlap_s)}
    )


async def _send_once(rt: Runtime, endpoint: Endpoint, event: Event) -> AttemptResult:
    body = body_for(event, endpoint.url, endpoint)
    target = endpoint_target(rt.endpoints, endpoint)
    if isinstance(target, Refused):
        return target.result()
    if not target.paced:
        return await _send(rt, target, event, body)
    # A Slack channel takes one message a second from everyone: the test waits its turn like a
    # delivery, so it is not answered 429 because deliveries are flowing.
    pacer = Pacer(rt.redis, interval_s=SLACK_INTERVAL_S)
    away_s = await pacer.take_slot(target.url, f"pixhook:ping:{event.id}", _MAX_PACED_WAIT_S)
    if away_s:
        message = f"the channel's next free slot is {away_s:.0f} s away; try again later"
        return AttemptResult(False, 0.0, error_code=CHANNEL_BUSY, error_message=message)
    result = await _send(rt, target, event, body)
    await pacer.answered(target.url, result)
    return result


async def _send(rt: Runtime, target: Target, event: Event, body: bytes) -> AttemptResult:
    settings = rt.settings
    try:
        headers = target.signed_headers(event.id, body)
    except InvalidSecret as exc:
        return AttemptResult(False, 0.0, error_code=SIGNING_ERROR, error_message=str(exc))
    session = open_session(
        settings.allow_private_networks,
        connect_timeout_s=settings.webhook_connect_timeout_s,
        max_connections=1,
        per_host=1,
    )
    async with session:
        return await send(
            session,
            target.url,
            body,
            headers,
            policy=settings.allow_private_networks,
            deadline_s=settings.webhook_attempt_timeout_s,
            response_cap=settings.webhook_response_cap_bytes,
        )


def _changed(rt: Runtime, endpoint: Endpoint, fields: EndpointFields) -> Endpoint:
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
            name: None if value is None else rt.endpoints.sealer.seal(value)
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
    return await read_json(request, rt.settings.max_request_bytes, rt.settings.json_shape)


async def _own_endpoint(request: Request) -> Endpoint:
    client = await authenticate(request)
    endpoint_id = request.path_params["endpoint_id"]
    # Stored under their owner: another client's endpoint is as absent as one that never was.
    endpoint = await runtime(request).endpoints.get(client.id, endpoint_id)
    if endpoint is None:
        raise _not_found(endpoint_id)
    return endpoint


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"no endpoint {endpoint_id}", code="ENDPOINT_NOT_FOUND", field="id")


routes = [
    Route("/v1/endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/endpoints/{endpoint_id}", get_endpoint, methods=["GET"]),
    Route("/v1/endpoints/{endpoint_id}", update_endpoint, methods=["PATCH"]),
    Route("/v1/endpoints/{endpoint_id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/endpoints/{endpoint_id}/test", ping_endpoint, methods=["POST"]),
    Route("/v1/endpoints/{endpoint_id}/stats", endpoint_stats, methods=["GET"]),
    Route("/v1/endpoints/{endpoint_id}/secret", get_endpoint_secret, methods=["GET"]),
    Route("/v1/endpoints/{endpoint_id}/secret/rotate", rotate_endpoint_secret, methods=["POST"]),
]
