"""`/openapi.json`, and what each route of the API answers (`operations`).

The document is built from `app.routes` by service/openapi.py; this module says, per endpoint,
what the route module's code does: its body (from each job type's `input_schema`), its replies
(from the views' schemas) and the error codes its code raises. A route missing here stops the
document from being built (`UndocumentedRoute`), and tests/test_openapi.py fuzzes the rest.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.api_schemas import (
    CURSOR_OUT,
    DLQ_FILTER,
    EVENT_ID,
    INPUTS,
    PAGING,
    REPLAYED,
    batch_body,
    batch_multipart,
    batch_reply,
    endpoint_body,
    file_types,
    idempotency_key,
    info,
    job_body,
    job_multipart,
    job_reply,
    links,
    ping_reply,
    replay_body,
    stream,
    unready,
    with_attempts,
    with_field,
)
from service.auth import runtime
from service.config import Settings
from service.console.routes import console
from service.endpoint_views import endpoint_schema, stats_schema
from service.events import WEBHOOK_EVENT_TYPES
from service.openapi import (
    JSON,
    Endpoint,
    Operation,
    Param,
    Reply,
    Schema,
    build_document,
    closed,
    retry_after_header,
)
from service.routes import batches, deliveries, endpoints, events, files, jobs, metrics, system
from service.tasks import JOB_TYPES
from service.views import delivery_schema
from webhooks.store import STATUSES

MULTIPART = "multipart/form-data"
ID_PATTERNS = {
    "job_id": "^job_[0-9a-z_]{1,60}$",
    "batch_id": "^bat_[0-9a-z]{1,40}$",
    "delivery_id": "^dlv_[0-9a-z]{1,40}$",
    "endpoint_id": "^ep_[0-9a-z]{1,40}$",
    # An itsdangerous token; never starting with '.', so no client collapses it as `..`.
    "token": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,1023}$",
}
_BODY = {400: ("INVALID_JSON",), 413: ("PAYLOAD_TOO_LARGE",), 415: ("UNSUPPORTED_MEDIA_TYPE",)}
# What any JSON body can be refused for, whatever the route: its shape and fields it does not take.
_SHAPE = ("INVALID_INPUT", "UNKNOWN_FIELD", "JSON_TOO_DEEP", "STRING_TOO_LONG", "LIST_TOO_LONG")
_URL = ("INVALID_URL", "URL_NOT_ALLOWED")
_IMAGE = (
    "MISSING_IMAGE",
    "IMAGE_TOO_LARGE",
    "INVALID_IMAGE",
    "TOO_MANY_FRAMES",
    "IMAGE_TOO_COMPLEX",
)
_IDEMPOTENCY = {409: ("IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_IN_PROGRESS")}


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(request.app.routes, runtime(request).settings))


def openapi_document(routes: list[Any], settings: Settings) -> Schema:
    """The document for these routes, with the limits these settings set."""
    assert INPUTS.keys() == JOB_TYPES.keys(), "every job type needs its schemas here"
    return build_document(
        # The console is pages for people, not part of the API.
        [route for route in routes if route is not console],
        operations(settings),
        path_patterns=ID_PATTERNS,
        title="pixhook",
        version=version("pixhook"),
    )


def operations(settings: Settings) -> dict[Endpoint, Operation]:
    job, batch, delivery = job_reply(), batch_reply(), delivery_schema()
    job_links = links("job_id", "get_job", "cancel_job")
    batch_links = links("batch_id", "get_batch", "cancel_batch")
    page = closed({"data": {"type": "array", "items": delivery}, "next_cursor": CURSOR_OUT})
    job_stream, batch_stream = stream("job"), stream("batch")
    resume = Param("last_event_id", "query", EVENT_ID, "or the `Last-Event-ID` header")
    return {
        jobs.create_job: Operation(
            "Submit a job",
            (Reply(202, "queued", {JSON: job}, REPLAYED, job_links),),
            body={JSON: job_body(settings), MULTIPART: job_multipart()},
            params=(idempotency_key(),),
            errors={
                **_BODY,
                **_IDEMPOTENCY,
                422: (*_SHAPE, *_URL, *_IMAGE, "INVALID_MULTIPART", "UNKNOWN_JOB_TYPE")
                + ("METADATA_TOO_LARGE", "INVALID_IDEMPOTENCY_KEY"),
                429: ("TOO_MANY_JOBS",),
                503: ("STORAGE_UNAVAILABLE",),
            },
        ),
        jobs.get_job: Operation(
            "A job", (Reply(200, "the job", {JSON: job}),), errors={404: ("JOB_NOT_FOUND",)}
        ),
        jobs.cancel_job: Operation(
            "Cancel a job that has not finished",
            (Reply(200, "canceled", {JSON: job}),),
            errors={404: ("JOB_NOT_FOUND",), 422: ("JOB_ALREADY_FINISHED",)},
        ),
        events.job_events: Operation(
            "A job's events as Server-Sent Events, closing after its final one",
            (Reply(200, "the event stream", job_stream),),
            params=(resume,),
            errors={404: ("JOB_NOT_FOUND",), 422: ("INVALID_EVENT_ID",)},
        ),
        batches.create_batch: Operation(
            "Submit a batch: JSON items, or a CSV file and an input template",
            (Reply(202, "running", {JSON: batch}, REPLAYED, batch_links),),
            body={JSON: batch_body(settings), MULTIPART: batch_multipart(settings)},
            params=(idempotency_key(),),
            errors={
                **_BODY,
                **_IDEMPOTENCY,
                422: (*_SHAPE, *_URL, "INVALID_MULTIPART", "UNKNOWN_JOB_TYPE", "EMPTY_BATCH")
                + ("BATCH_TOO_LARGE", "INVALID_CSV", "INVALID_TEMPLATE", "METADATA_TOO_LARGE")
                + ("INVALID_IDEMPOTENCY_KEY",),
                429: ("TOO_MANY_JOBS",),
                503: ("STORAGE_UNAVAILABLE",),
            },
        ),
        batches.get_batch: Operation(
            "A batch", (Reply(200, "the batch", {JSON: batch}),), errors={404: ("BATCH_NOT_FOUND",)}
        ),
        batches.batch_events: Operation(
            "A batch's events as Server-Sent Events, closing after its final one",
            (Reply(200, "the event stream", batch_stream),),
            params=(resume,),
            errors={404: ("BATCH_NOT_FOUND",), 422: ("INVALID_EVENT_ID",)},
        ),
        batches.cancel_batch: Operation(
            "Cancel a running batch",
            (Reply(200, "canceled", {JSON: batch}),),
            errors={404: ("BATCH_NOT_FOUND",), 422: ("BATCH_ALREADY_FINISHED",)},
        ),
        deliveries.list_deliveries: Operation(
            "The client's webhook deliveries with one status, newest first",
            (Reply(200, "a page", {JSON: page}),),
            params=(Param("status", "query", {"enum": list(STATUSES), "default": "pending"}),)
            + PAGING,
            errors={422: ("INVALID_INPUT",)},
        ),
        deliveries.get_delivery: Operation(
            "A delivery and its attempts",
            (Reply(200, "the delivery", {JSON: with_attempts(delivery)}),),
            errors={404: ("DELIVERY_NOT_FOUND",)},
        ),
        deliveries.retry_delivery: Operation(
            "Send a delivery again now, whatever its status",
            (Reply(202, "requeued", {JSON: delivery}),),
            errors={404: ("DELIVERY_NOT_FOUND",)},
        ),
        deliveries.list_dlq: Operation(
            "Dead deliveries, newest first",
            (Reply(200, "a page", {JSON: page}),),
            params=PAGING + DLQ_FILTER,
            errors={422: ("INVALID_INPUT",)},
        ),
        deliveries.replay_dlq: Operation(
            "Requeue dead deliveries: by id, by host and time, or all",
            (Reply(202, "requeued", {JSON: closed({"requeued": {"type": "integer"}})}),),
            body={JSON: replay_body()},
            errors={**_BODY, 422: _SHAPE},
        ),
        deliveries.delete_dlq: Operation(
            "Purge a dead delivery",
            (Reply(204, "purged"),),
            errors={404: ("DELIVERY_NOT_FOUND",)},
        ),
        **_endpoint_operations(settings),
        files.get_file: Operation(
            "A stored output, behind a signed and expiring link",
            (Reply(200, "the file", file_types()),),
            authenticated=False,
            errors={
                403: ("LINK_EXPIRED", "LINK_INVALID"),
                404: ("FILE_NOT_FOUND",),
                503: ("STORAGE_UNAVAILABLE",),
            },
        ),
        system.healthcheck: Operation(
            "Liveness",
            (Reply(200, "alive", {JSON: closed({"status": {"const": "ok"}})}),),
            authenticated=False,
        ),
        system.readyz: Operation(
            "Readiness: Redis answers",
            (
                Reply(200, "ready", {JSON: closed({"status": {"const": "ready"}})}),
                Reply(
                    503,
                    "Redis is unreachable",
                    {JSON: unready()},
                    {"Retry-After": retry_after_header()},
                ),
            ),
            authenticated=False,
        ),
        system.info: Operation(
            "Version, job types, formats and limits",
            (Reply(200, "this deployment", {JSON: info(settings)}),),
            authenticated=False,
        ),
        metrics.metrics: Operation(
            "Prometheus metrics",
            (Reply(200, "text exposition format", {"text/plain": {"type": "string"}}),),
            authenticated=False,
            errors={503: ("SERVICE_UNAVAILABLE",)},
        ),
        openapi_json: Operation(
            "This document",
            (Reply(200, "OpenAPI 3.1", {JSON: {"type": "object"}}),),
            authenticated=False,
        ),
    }


def _endpoint_operations(settings: Settings) -> dict[Endpoint, Operation]:
    endpoint = endpoint_schema(list(WEBHOOK_EVENT_TYPES), sorted(JOB_TYPES))
    secret = {"type": "string", "pattern": "^whsec_"}
    missing = {404: ("ENDPOINT_NOT_FOUND",)}
    fields = (*_SHAPE, *_URL, "UNKNOWN_EVENT_TYPE", "UNKNOWN_JOB_TYPE") + (
        "INVALID_HEADER",
        "INVALID_TEMPLATE",
    )
    return {
        endpoints.create_endpoint: Operation(
            "Add an endpoint: a URL that receives the client's events that match its filters",
            (
                Reply(
                    201,
                    "created; the only reply that carries its secret, but GET .../secret",
                    {JSON: with_field(endpoint, "secret", secret)},
                    REPLAYED,
                ),
            ),
            body={JSON: endpoint_body(settings, creating=True)},
            params=(idempotency_key(),),
            errors={
                **_BODY,
                409: (*_IDEMPOTENCY[409], "IDEMPOTENCY_UNREADABLE"),
                422: (*fields, "TOO_MANY_ENDPOINTS", "INVALID_IDEMPOTENCY_KEY"),
            },
        ),
        endpoints.list_endpoints: Operation(
            "The client's endpoints, oldest first",
            (
                Reply(
                    200,
                    "all of them",
                    {JSON: closed({"data": {"type": "array", "items": endpoint}})},
                ),
            ),
        ),
        endpoints.get_endpoint: Operation(
            "An endpoint; header values show only their last characters",
            (Reply(200, "the endpoint", {JSON: endpoint}),),
            errors=missing,
        ),
        endpoints.update_endpoint: Operation(
            "Change an endpoint; `headers` is a merge patch (null removes one), `enabled: true` "
            "re-enables a disabled one",
            (Reply(200, "the endpoint", {JSON: endpoint}),),
            body={JSON: endpoint_body(settings, creating=False)},
            errors={**_BODY, **missing, 422: fields},
        ),
        endpoints.delete_endpoint: Operation(
            "Delete an endpoint; its pending deliveries die unsent",
            (Reply(204, "deleted"),),
            errors=missing,
        ),
        endpoints.ping_endpoint: Operation(
            "Send a signed `ping` event now and answer with what the endpoint did",
            (Reply(200, "the attempt", {JSON: ping_reply()}),),
            errors=missing,
        ),
        endpoints.endpoint_stats: Operation(
            "Attempts, success rate, latency percentiles and the last failure",
            (Reply(200, "the stats", {JSON: stats_schema()}),),
            errors=missing,
        ),
        endpoints.get_endpoint_secret: Operation(
            "The endpoint's current signing secret",
            (Reply(200, "the secret", {JSON: closed({"secret": secret})}),),
            errors=missing,
        ),
        endpoints.rotate_endpoint_secret: Operation(
            "A new signing secret; the previous one keeps signing until the overlap ends",
            (
                Reply(
                    200,
                    "the new secret",
                    {
                        JSON: closed(
                            {
                                "secret": secret,
                                "previous_secret_expires_at": {
                                    "type": "string",
                                    "format": "date-time",
                                },
                            }
                        )
                    },
                ),
            ),
            errors=missing,
        ),
    }


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
