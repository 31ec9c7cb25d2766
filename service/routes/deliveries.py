"""`/v1/deliveries` and `/v1/dlq`: the attempt log, manual retries, the dead-letter queue."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.auth import authenticate, runtime
from service.bodies import read_json
from service.errors import InvalidInput, NotFound
from service.moments import MOMENT_FORMS, parse_moment
from service.unknown_fields import refuse_unknown_fields
from service.views import delivery_view, iso
from webhooks.dlq import DlqFilter
from webhooks.store import STATUSES, Delivery

MAX_PAGE = 200
FILTERS = ("host", "since", "until", "endpoint_id")
_REPLAY_FIELDS = ("ids", "all", *FILTERS)
_ENDPOINT_ID = re.compile(r"ep_[0-9a-z]{1,40}")


async def list_deliveries(request: Request) -> JSONResponse:
    client = await authenticate(request)
    status = request.query_params.get("status", "pending")
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of: {', '.join(STATUSES)}", field="status")
    limit, cursor = _paging(request)
    rt = runtime(request)
    key = rt.deliveries.keys.by_status(client.id, status)
    rows = await rt.deliveries.page(key, limit=limit, before=cursor)
    next_cursor = str(rows[-1][1]) if len(rows) == limit else None
    return JSONResponse({"data": [delivery_view(d) for d, _ in rows], "next_cursor": next_cursor})


async def get_delivery(request: Request) -> JSONResponse:
    delivery = await _own_delivery(request)
    attempts = await runtime(request).deliveries.attempts(delivery.id)
    view = delivery_view(delivery)
    view["attempts"] = [
        {
            "number": a.number,
            "started_at": iso(a.started_at),
            "duration_ms": a.duration_ms,
            "status_code": a.status_code,
            "error_code": a.error_code,
            "error_message": a.error_message,
            "response_excerpt": a.response_excerpt,
        }
        for a in attempts
    ]
    return JSONResponse(view)


async def retry_delivery(request: Request) -> JSONResponse:
    """Send again now, with a fresh retry schedule and the same event id, whatever its status."""
    delivery = await _own_delivery(request)
    rt = runtime(request)
    await rt.deliveries.requeue(delivery, time.time(), only_dead=False)
    requeued = await rt.deliveries.get(delivery.id)
    return JSONResponse(delivery_view(requeued or delivery), status_code=202)


async def list_dlq(request: Request) -> JSONResponse:
    client = await authenticate(request)
    limit, cursor = _paging(request)
    page = await runtime(request).dead_letters.page(
        client.id, _filter(request.query_params), limit=limit, cursor=cursor
    )
    next_cursor = None if page.next_cursor is None else str(page.next_cursor)
    return JSONResponse(
        {"data": [delivery_view(d) for d in page.deliveries], "next_cursor": next_cursor}
    )


async def replay_dlq(request: Request) -> JSONResponse:
    """Body: {"ids": [...]}, or a filter {"host", "since", "until", "endpoint_id"}, or
    {"all": true}."""
    client = await authenticate(request)
    rt = runtime(request)
    body = await read_json(request, rt.settings.max_request_bytes, rt.settings.json_shape)
    if isinstance(body, dict):
        refuse_unknown_fields(body, _REPLAY_FIELDS)
        # A null is no selection: `{"host": null}` must not replay everything.
        body = {name: value for name, value in body.items() if value is not None}
    if not isinstance(body, dict) or not body:
        raise InvalidInput(
            'say what to replay: {"ids": [...]}, a filter on host/since/until/endpoint_id, '
            'or {"all": true}'
        )
    if "ids" in body:
        beside = next((name for name in body if name != "ids"), None)
        if beside is not None:
            raise InvalidInput("replay either ids or a filter, not both", field=beside)
        ids = body["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 1000:
            raise InvalidInput("ids must be a list of at most 1000 delivery ids", field="ids")
        count = sum([await rt.dead_letters.replay_one(client.id, i) for i in ids])
    else:
        if "all" in body and body["all"] is not True:
            raise InvalidInput("all must be true", field="all")
        count = await rt.dead_letters.replay(client.id, _filter(body))
    return JSONResponse({"requeued": count}, status_code=202)


async def delete_dlq(request: Request) -> Response:
    client = await authenticate(request)
    delivery_id = request.path_params["delivery_id"]
    if not await runtime(request).dead_letters.purge(client.id, delivery_id):
        raise NotFound(f"no dead delivery {delivery_id}", code="DELIVERY_NOT_FOUND", field="id")
    return Response(status_code=204)


async def _own_delivery(request: Request) -> Delivery:
    client = await authenticate(request)
    delivery_id = request.path_params["delivery_id"]
    delivery = await runtime(request).deliveries.get(delivery_id)
    if delivery is None or delivery.owner != client.id:
        raise NotFound(f"no delivery {delivery_id}", code="DELIVERY_NOT_FOUND", field="id")
    return delivery


_DIGITS = re.compile(r"[0-9]{1,18}")


def _paging(request: Request) -> tuple[int, int | None]:
    raw_limit = request.query_params.get("limit", "50")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not _DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    raw_cursor = request.query_params.get("cursor")
    if raw_cursor is not None and not _DIGITS.fullmatch(raw_cursor):
        raise InvalidInput("cursor must be a next_cursor from an earlier page", field="cursor")
    return int(raw_limit), None if raw_cursor is None else int(raw_cursor)


def _filter(source: Any) -> DlqFilter:
    host = source.get("host")
    if host is not None and (not isinstance(host, str) or not host):
        raise InvalidInput("host must be a host name", field="host")
    endpoint_id = source.get("endpoint_id")
    if endpoint_id is not None and not (
        isinstance(endpoint_id, str) and _ENDPOINT_ID.fullmatch(endpoint_id)
    ):
        raise InvalidInput("endpoint_id must be an endpoint's id, ep_…", field="endpoint_id")
    return DlqFilter(host, _moment(source, "since"), _moment(source, "until"), endpoint_id)


def _moment(source: Any, name: str) -> float | None:
    """A JSON number of Unix seconds, or text as `pixhook dlq --since` reads it."""
    value = source.get(name)
    if value is None:
        return None
    # NaN and infinities parse as numbers but name no moment.
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_moment(value, time.time())
        except ValueError:
            pass
    raise InvalidInput(f"{name} must be {MOMENT_FORMS}", field=name)


routes = [
    Route("/v1/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    Route("/v1/deliveries/{delivery_id}/retry", retry_delivery, methods=["POST"]),
    Route("/v1/dlq", list_dlq, methods=["GET"]),
    Route("/v1/dlq/replay", replay_dlq, methods=["POST"]),
    Route("/v1/dlq/{delivery_id}", delete_dlq, methods=["DELETE"]),
]
