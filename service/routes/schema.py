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

from service import imaging
from service.auth import runtime
from service.batches.engine import batch_schema
from service.config import Settings
from service.events import SUBSCRIPTIONS
from service.idempotency import KEY_HEADER, MAX_KEY_CHARS, REPLAYED_HEADER
from service.openapi import JSON, Endpoint, Operation, Param, Reply, Schema, build_document, closed
from service.routes import batches, deliveries, events, files, jobs, metrics, system
from service.tasks import JOB_TYPES, analyze, generate, transform
from service.views import attempt_schema, delivery_schema, job_schema
from webhooks.store import STATUSES

# Each job type's schemas, beside its `parse_input` and `run`.
_INPUTS = {m.NAME: m.input_schema for m in (transform, analyze, generate)}
_OUTPUTS = {m.NAME: m.output_schema for m in (transform, analyze, generate)}

MULTIPART = "multipart/form-data"
ID_PATTERNS = {
    "job_id": "^job_[0-9a-z_]{1,60}$",
    "batch_id": "^bat_[0-9a-z]{1,40}$",
    "delivery_id": "^dlv_[0-9a-z]{1,40}$",
    # An itsdangerous token; never starting with '.', so no client collapses it as `..`.
    "token": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,1023}$",
}
_BODY = {400: ("INVALID_JSON",), 413: ("PAYLOAD_TOO_LARGE",)}
_SHAPE = ("INVALID_INPUT", "JSON_TOO_DEEP", "STRING_TOO_LONG", "LIST_TOO_LONG")
_URL = ("INVALID_URL", "URL_NOT_ALLOWED")
_IMAGE = ("MISSING_IMAGE", "IMAGE_TOO_LARGE", "INVALID_IMAGE", "TOO_MANY_FRAMES")
_IDEMPOTENCY = {409: ("IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_IN_PROGRESS")}


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(request.app.routes, runtime(request).settings))


def openapi_document(routes: list[Any], settings: Settings) -> Schema:
    """The document for these routes, with the limits these settings set."""
    assert _INPUTS.keys() == JOB_TYPES.keys(), "every job type needs its schemas here"
    return build_document(
        routes,
        operations(settings),
        path_patterns=ID_PATTERNS,
        title="pixhook",
        version=version("pixhook"),
    )


def operations(settings: Settings) -> dict[Endpoint, Operation]:
    job, batch, delivery = _job(), _batch(), delivery_schema()
    job_links = _links("job_id", "get_job", "cancel_job")
    batch_links = _links("batch_id", "get_batch", "cancel_batch")
    page = closed({"data": {"type": "array", "items": delivery}, "next_cursor": _CURSOR_OUT})
    job_stream, batch_stream = _stream("job"), _stream("batch")
    resume = Param("last_event_id", "query", _EVENT_ID, "or the `Last-Event-ID` header")
    return {
        jobs.create_job: Operation(
            "Submit a job",
            (Reply(202, "queued", {JSON: job}, _REPLAYED, job_links),),
            body={JSON: _job_body(settings), MULTIPART: _job_multipart()},
            params=(_idempotency_key(),),
            errors={
                **_BODY,
                **_IDEMPOTENCY,
                415: ("UNSUPPORTED_MEDIA_TYPE",),
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
            (Reply(202, "running", {JSON: batch}, _REPLAYED, batch_links),),
            body={JSON: _batch_body(settings), MULTIPART: _batch_multipart(settings)},
            params=(_idempotency_key(),),
            errors={
                **_BODY,
                **_IDEMPOTENCY,
                415: ("UNSUPPORTED_MEDIA_TYPE",),
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
            + _PAGING,
            errors={422: ("INVALID_INPUT",)},
        ),
        deliveries.get_delivery: Operation(
            "A delivery and its attempts",
            (Reply(200, "the delivery", {JSON: _with_attempts(delivery)}),),
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
            params=_PAGING + _DLQ_FILTER,
            errors={422: ("INVALID_INPUT",)},
        ),
        deliveries.replay_dlq: Operation(
            "Requeue dead deliveries: by id, by host and time, or all",
            (Reply(202, "requeued", {JSON: closed({"requeued": {"type": "integer"}})}),),
            body={JSON: _replay_body()},
            errors={**_BODY, 422: _SHAPE},
        ),
        deliveries.delete_dlq: Operation(
            "Purge a dead delivery",
            (Reply(204, "purged"),),
            errors={404: ("DELIVERY_NOT_FOUND",)},
        ),
        files.get_file: Operation(
            "A stored output, behind a signed and expiring link",
            (Reply(200, "the file", _file_types()),),
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
                Reply(503, "Redis is unreachable", {JSON: _unready()}),
            ),
            authenticated=False,
        ),
        system.info: Operation(
            "Version, job types, formats and limits",
            (Reply(200, "this deployment", {JSON: _info(settings)}),),
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


# Request bodies.


def _job_body(settings: Settings) -> Schema:
    """`submission.parse_submission`: one variant per job type, chosen by `type`."""
    return {"oneOf": [_job_variant(name, settings) for name in sorted(JOB_TYPES)]}


def _job_variant(name: str, settings: Settings) -> Schema:
    job_input = _INPUTS[name](settings)
    if JOB_TYPES[name].takes_image:
        job_input = {
            **job_input,
            "properties": {"image": _image(settings), **job_input["properties"]},
            "required": ["image", *job_input.get("required", [])],
        }
    return {
        "type": "object",
        "properties": {"type": {"const": name}, "input": job_input, **_delivery_fields(settings)},
        "required": ["type", "input"],
    }


def _image(settings: Settings) -> Schema:
    """`submission._image`: a URL the worker fetches, or the bytes in base64."""
    url = {"type": "string", "format": "uri", "maxLength": settings.max_url_length}
    # Base64 is ASCII (a data: URL's prefix aside); whitespace in it is skipped.
    base64 = {"type": "string", "pattern": "^(data:[^,]*,)?[A-Za-z0-9+/=\t\n\r ]*$"}
    return {"oneOf": [closed({"url": url}), closed({"base64": base64})]}


def _delivery_fields(settings: Settings) -> dict[str, Schema]:
    url = {"type": "string", "format": "uri", "maxLength": settings.max_url_length}
    events = {"type": "array", "minItems": 1, "items": {"enum": sorted(SUBSCRIPTIONS)}}
    return {
        "webhook_url": {**url, "type": ["string", "null"]},
        "webhook_events": {**events, "type": ["array", "null"], "default": ["completed"]},
        "metadata": {
            "type": ["object", "null"],
            "description": f"echoed back; at most {settings.max_metadata_bytes} bytes as JSON",
        },
    }


def _job_multipart() -> Schema:
    """`bodies._read_multipart`: the JSON body in `job`, the image as the file `image`."""
    return {
        "type": "object",
        "properties": {
            "job": {"type": "string", "contentMediaType": JSON},
            "image": {"type": "string", "contentMediaType": "application/octet-stream"},
        },
        "required": ["job"],
    }


def _batch_body(settings: Settings) -> Schema:
    """`batches.intake`: JSON items of one job type."""
    variants = []
    for name in sorted(JOB_TYPES):
        item = _job_variant(name, settings)
        item_fields = {k: item["properties"][k] for k in ("type", "input", "metadata")}
        items = {
            "type": "array",
            "minItems": 1,
            "maxItems": settings.max_batch_items,
            "items": closed(item_fields, optional={"type", "metadata"}),
        }
        variants.append(_batch_fields(name, settings) | {"items": items})
    return {"oneOf": [closed(v, optional=_BATCH_OPTIONAL) for v in variants]}


def _batch_multipart(settings: Settings) -> Schema:
    """`batches.intake`: the batch as JSON in `batch` (its `input` a template), rows in `csv`."""
    return {
        "type": "object",
        "properties": {
            "batch": {"type": "string", "contentMediaType": JSON},
            "csv": {"type": "string", "contentMediaType": "text/csv"},
        },
        "required": ["batch", "csv"],
    }


_BATCH_OPTIONAL = {"webhook_url", "webhook_events", "item_webhooks", "concurrency", "metadata"}


def _batch_fields(name: str, settings: Settings) -> dict[str, Schema]:
    return {
        "type": {"const": name},
        **_delivery_fields(settings),
        "item_webhooks": {"type": "boolean", "default": False},
        "concurrency": {"type": ["integer", "null"], "minimum": 1},
    }


def _replay_body() -> Schema:
    """`deliveries.replay_dlq`: ids, or a filter on host and time, or all."""
    moment = {"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
    ids = {"type": "array", "maxItems": 1000, "items": {"type": "string"}}
    where = {"all": {"const": True}, "host": {"type": "string", "minLength": 1}}
    where |= {"since": moment, "until": moment}
    return {
        "anyOf": [
            {"type": "object", "properties": {"ids": ids}, "required": ["ids"]},
            {
                "type": "object",
                "properties": where,
                "not": {"required": ["ids"]},
                "anyOf": [{"required": [name]} for name in where],
            },
        ]
    }


# Replies.


def _job() -> Schema:
    outputs = [_OUTPUTS[name]() for name in sorted(JOB_TYPES)]
    view = job_schema(JOB_TYPES, outputs, SUBSCRIPTIONS)
    # `jobs._view` adds the job's deliveries to `job_view`.
    return _with(view, "deliveries", {"type": "array", "items": delivery_schema()})


def _batch() -> Schema:
    return batch_schema(JOB_TYPES, SUBSCRIPTIONS)


def _with_attempts(delivery: Schema) -> Schema:
    return _with(delivery, "attempts", {"type": "array", "items": attempt_schema()})


def _with(schema: Schema, name: str, extra: Schema) -> Schema:
    return {
        **schema,
        "properties": {**schema["properties"], name: extra},
        "required": [*schema["required"], name],
    }


def _stream(owner: str) -> dict[str, Schema]:
    """One event of `events.sse_frame`: `data` is the JSON of the job or batch (or a delta)."""
    event = closed(
        {
            "id": _EVENT_ID,
            "event": {"type": "string", "pattern": f"^{owner}\\."},
            "data": {"type": "string", "contentMediaType": JSON},
            "retry": {"type": "integer"},
        },
        optional={"retry"},
    )
    return {"text/event-stream": event}


def _file_types() -> dict[str, Schema]:
    types = sorted(files.INLINE_TYPES | files.DOWNLOAD_TYPES) + ["application/octet-stream"]
    return {media_type: {"type": "string"} for media_type in types}


def _unready() -> Schema:
    return closed({"status": {"const": "unavailable"}, "redis": {"type": "string"}})


def _info(settings: Settings) -> Schema:
    """`system.info`: the limits are `Settings.limits()`, whatever they become."""
    number = {"type": "number"}
    strings = {"type": "array", "items": {"type": "string"}}
    return closed(
        {
            "name": {"const": "pixhook"},
            "version": {"type": "string"},
            "job_types": {"type": "array", "items": {"enum": sorted(JOB_TYPES)}},
            "output_formats": {"type": "array", "items": {"enum": sorted(imaging.OUTPUT_FORMATS)}},
            "input_formats": {"type": "array", "items": {"enum": sorted(imaging.INPUT_FORMATS)}},
            "providers": strings,
            "limits": closed({name: number for name in settings.limits()}),
            "webhooks": closed(
                {
                    "retry_schedule_s": {"type": "array", "items": number},
                    "signature": {"type": "string"},
                }
            ),
        }
    )


def _links(param: str, *operation_ids: str) -> dict[str, Schema]:
    return {
        operation_id: {"operationId": operation_id, "parameters": {param: "$response.body#/id"}}
        for operation_id in operation_ids
    }


# Parameters.


def _idempotency_key() -> Param:
    # Printable ASCII without edge spaces, which HTTP strips from header values.
    pattern = f"^[!-~]([ -~]{{0,{MAX_KEY_CHARS - 2}}}[!-~])?$"
    return Param(KEY_HEADER, "header", {"type": "string", "pattern": pattern})


_REPLAYED = {REPLAYED_HEADER: {"required": False, "schema": {"const": "true"}}}
_CURSOR = {"type": "string", "pattern": "^[0-9]{1,18}$"}
_CURSOR_OUT = {"type": ["string", "null"], "pattern": "^[0-9]+$"}
_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,19}(-[0-9]{1,19})?$"}
_PAGING = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": deliveries.MAX_PAGE}),
    Param("cursor", "query", _CURSOR, "`next_cursor` of the previous page"),
)
_DLQ_FILTER = (
    Param("host", "query", {"type": "string", "minLength": 1}),
    Param("since", "query", {"type": "string", "pattern": "^[0-9]{1,12}(\\.[0-9]{1,6})?$"}),
    Param("until", "query", {"type": "string", "pattern": "^[0-9]{1,12}(\\.[0-9]{1,6})?$"}),
)

routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
