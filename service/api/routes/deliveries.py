"""`/v1/deliveries` and `/v1/dlq`: the attempt log, manual retries, the dead-letter queue."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.authentication import client_of
from service.api.bodies import read_json
from service.api.client_routes import ClientRoute
from service.api.operations import (
    BODY_ERRORS,
    JSON,
    SHAPE_ERRORS,
    Operation,
    Param,
    Reply,
    documented,
)
from service.errors import InvalidInput, NotFound
from service.jobs.view_models import DeliveryPage, DeliveryView, DeliveryWithAttempts, Requeued
from service.jobs.views import attempt_view, delivery_view
from service.moments import MOMENT_FORMS, parse_moment
from service.runtime import runtime
from service.shapes.validation import REQUEST, validated
from webhooks import STATUSES, Delivery, DeliveryStore, DlqFilter

MAX_PAGE = 200
FILTERS = ("host", "since", "until", "endpoint_id")
_ENDPOINT_ID = re.compile(r"ep_[0-9a-z]{1,40}")
_DELIVERY = DeliveryView
_MISSING = {404: ("DELIVERY_NOT_FOUND",)}
# What `moments.parse_moment` reads: Unix seconds, a duration ago, or an ISO 8601 time.
MOMENT: dict[str, Any] = {
    "type": "string",
    "pattern": (
        r"^([0-9]{1,12}(\.[0-9]{1,6})?"  # Unix seconds
        r"|[0-9]{1,9}(\.[0-9]{1,3})?(ms|s|m|h)"  # a duration ago
        r"|[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?)$"  # ISO 8601
    ),
    "description": MOMENT_FORMS,
}
_EP = {"type": "string", "pattern": f"^{_ENDPOINT_ID.pattern}$"}
PAGING = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    Param(
        "cursor",
        "query",
        {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "`next_cursor` of the previous page",
    ),
)
DLQ_FILTER = (
    Param("host", "query", {"type": "string", "minLength": 1}),
    Param("endpoint_id", "query", _EP),
    Param("since", "query", MOMENT, MOMENT_FORMS),
    Param("until", "query", MOMENT, MOMENT_FORMS),
)
_LAST = 253402300799  # 9999-12-31T23:59:59Z, in Unix seconds
_SECONDS = {"type": "number", "minimum": -_LAST, "maximum": _LAST}
# A filter's values are read by `_filter`, as the query string's are.
Moment = Annotated[Any, WithJsonSchema({"anyOf": [_SECONDS, MOMENT, {"type": "null"}]})]


class Replay(BaseModel):
    """Which dead deliveries to requeue: `ids`, or a filter on host, time and endpoint, or
    `all: true`. A null is no selection."""

    model_config = REQUEST
    ids: Annotated[list[str], Field(max_length=1000)] | None = None
    all: Literal[True] | None = None
    host: Annotated[Any, WithJsonSchema({"type": ["string", "null"], "minLength": 1})] = None
    since: Moment = None
    until: Moment = None
    endpoint_id: Annotated[Any, WithJsonSchema({**_EP, "type": ["string", "null"]})] = None


@documented(
    Operation(
        "The client's webhook deliveries with one status, newest first",
        (Reply(200, "a page", {JSON: DeliveryPage}),),
        params=(Param("status", "query", {"enum": list(STATUSES), "default": "pending"}), *PAGING),
        errors={422: ("INVALID_INPUT",)},
    )
)
async def list_deliveries(request: Request) -> JSONResponse:
    client = client_of(request)
    status = request.query_params.get("status", "pending")
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of: {', '.join(STATUSES)}", field="status")
    limit, cursor = _paging(request)
    rt = runtime(request)
    key = rt.deliveries.keys.by_status(client.id, status)
    rows = await rt.deliveries.page(key, limit=limit, before=cursor)
    next_cursor = str(rows[-1][1]) if len(rows) == limit else None
    views = [delivery_view(d) for d, _ in rows]
    return JSONResponse(DeliveryPage.render({"data": views, "next_cursor": next_cursor}))


@documented(
    Operation(
        "A delivery and its attempts",
        (Reply(200, "the delivery", {JSON: DeliveryWithAttempts}),),
        errors=_MISSING,
    )
)
async def get_delivery(request: Request) -> JSONResponse:
    deliveries = runtime(request).deliveries
    delivery = await _own_delivery(request, deliveries)
    attempts = await deliveries.attempts(delivery.id)
    view = delivery_view(delivery) | {"attempts": [attempt_view(a) for a in attempts]}
    return JSONResponse(DeliveryWithAttempts.render(view))


@documented(
    Operation(
        "Send a delivery again now, whatever its status",
        (Reply(202, "requeued", {JSON: _DELIVERY}),),
        errors=_MISSING,
    )
)
async def retry_delivery(request: Request) -> JSONResponse:
    """Send again now, with a fresh retry schedule and the same event id, whatever its status."""
    deliveries = runtime(request).deliveries
    delivery = await _own_delivery(request, deliveries)
    await deliveries.requeue(delivery, time.time(), only_dead=False)
    requeued = await deliveries.get(delivery.id)
    return JSONResponse(delivery_view(requeued or delivery), status_code=202)


@documented(
    Operation(
        "Dead deliveries, newest first",
        (Reply(200, "a page", {JSON: DeliveryPage}),),
        params=PAGING + DLQ_FILTER,
        errors={422: ("INVALID_INPUT",)},
    )
)
async def list_dlq(request: Request) -> JSONResponse:
    client = client_of(request)
    limit, cursor = _paging(request)
    page = await runtime(request).dead_letters.page(
        client.id, _filter(request.query_params), limit=limit, cursor=cursor
    )
    next_cursor = None if page.next_cursor is None else str(page.next_cursor)
    views = [delivery_view(d) for d in page.deliveries]
    return JSONResponse(DeliveryPage.render({"data": views, "next_cursor": next_cursor}))


@documented(
    Operation(
        "Requeue dead deliveries: by id, by host and time, or all",
        (Reply(202, "requeued", {JSON: Requeued}),),
        body={JSON: Replay},
        errors={**BODY_ERRORS, 422: SHAPE_ERRORS},
    )
)
async def replay_dlq(request: Request) -> JSONResponse:
    """Body: {"ids": [...]}, or a filter {"host", "since", "until", "endpoint_id"}, or
    {"all": true}."""
    client = client_of(request)
    rt = runtime(request)
    body = await read_json(request, rt.settings.limits.max_request_bytes, rt.settings.json_shape)
    if isinstance(body, dict):
        # A null is no selection: `{"host": null}` must not replay everything.
        body = validated(Replay, body, rt.settings).model_dump(exclude_none=True)
    if not isinstance(body, dict) or not body:
        raise InvalidInput(
            'say what to replay: {"ids": [...]}, a filter on host/since/until/endpoint_id, '
            'or {"all": true}'
        )
    if "ids" in body:
        beside = next((name for name in body if name != "ids"), None)
        if beside is not None:
            raise InvalidInput("replay either ids or a filter, not both", field=beside)
        count = sum([await rt.dead_letters.replay_one(client.id, i) for i in body["ids"]])
    else:
        count = await rt.dead_letters.replay(client.id, _filter(body))
    return JSONResponse(Requeued.render({"requeued": count}), status_code=202)


@documented(Operation("Purge a dead delivery", (Reply(204, "purged"),), errors=_MISSING))
async def delete_dlq(request: Request) -> Response:
    client = client_of(request)
    delivery_id = request.path_params["delivery_id"]
    if not await runtime(request).dead_letters.purge(client.id, delivery_id):
        raise NotFound(f"no dead delivery {delivery_id}", code="DELIVERY_NOT_FOUND", field="id")
    return Response(status_code=204)


async def _own_delivery(request: Request, deliveries: DeliveryStore) -> Delivery:
    delivery_id = request.path_params["delivery_id"]
    delivery = await deliveries.get(delivery_id)
    if delivery is None or delivery.owner != client_of(request).id:
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
    # NaN, infinities and numbers past year 9999 parse as numbers but name no moment (and
    # overflow in microseconds).
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= _LAST:
        return float(value)
    if isinstance(value, str):
        try:
            return parse_moment(value, time.time())
        except ValueError:
            pass
    raise InvalidInput(f"{name} must be {MOMENT_FORMS}", field=name)


routes = [
    ClientRoute("/v1/deliveries", list_deliveries, methods=["GET"]),
    ClientRoute("/v1/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    ClientRoute("/v1/deliveries/{delivery_id}/retry", retry_delivery, methods=["POST"]),
    ClientRoute("/v1/dlq", list_dlq, methods=["GET"]),
    ClientRoute("/v1/dlq/replay", replay_dlq, methods=["POST"]),
    ClientRoute("/v1/dlq/{delivery_id}", delete_dlq, methods=["DELETE"]),
]
