"""The pieces of the OpenAPI document: request bodies, replies and parameters, built from the
job types' and views' own schemas (service/routes/schema.py assembles them per route)."""

from __future__ import annotations

from service import imaging
from service.batches.views import batch_schema
from service.config import Settings
from service.endpoint_input import (
    MAX_DESCRIPTION_CHARS,
    MAX_EVENT_TYPES,
    MAX_HEADER_VALUE_CHARS,
    MAX_HEADERS,
)
from service.events import SUBSCRIPTIONS, WEBHOOK_EVENT_TYPES
from service.idempotency import KEY_HEADER, MAX_KEY_CHARS, REPLAYED_HEADER
from service.moments import MOMENT_FORMS
from service.openapi import JSON, Param, Schema, closed, nullable
from service.routes import deliveries, files
from service.tasks import JOB_TYPES, analyze, generate, transform
from service.views import attempt_schema, delivery_schema, job_schema
from webhooks.endpoints import KINDS

# Each job type's schemas, beside its `parse_input` and `run`.
INPUTS = {m.NAME: m.input_schema for m in (transform, analyze, generate)}
OUTPUTS = {m.NAME: m.output_schema for m in (transform, analyze, generate)}

_EP = "^ep_[0-9a-z]{1,40}$"  # an endpoint id, as routes/schema.py's ID_PATTERNS has it
# What `moments.parse_moment` reads: Unix seconds, a duration ago, or an ISO 8601 time.
MOMENT: Schema = {
    "type": "string",
    "pattern": (
        r"^([0-9]{1,12}(\.[0-9]{1,6})?"  # Unix seconds
        r"|[0-9]{1,9}(\.[0-9]{1,3})?(ms|s|m|h)"  # a duration ago
        r"|[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?)$"  # ISO 8601
    ),
    "description": MOMENT_FORMS,
}

# Request bodies.


def job_body(settings: Settings) -> Schema:
    """`submission.parse_submission`: one variant per job type, chosen by `type`."""
    return {"oneOf": [_job_variant(name, settings) for name in sorted(JOB_TYPES)]}


def _job_variant(name: str, settings: Settings) -> Schema:
    job_input = INPUTS[name](settings)
    if JOB_TYPES[name].takes_image:
        job_input = {
            **job_input,
            "properties": {"image": _image(settings), **job_input["properties"]},
            "required": ["image", *job_input.get("required", [])],
        }
    properties = {"type": {"const": name}, "input": job_input, **_delivery_fields(settings)}
    return closed(properties, optional=("webhook_url", "webhook_events", "metadata"))


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


def job_multipart() -> Schema:
    """`bodies._read_multipart`: the JSON body in `job`, the image as the file `image`."""
    return {
        "type": "object",
        "properties": {
            "job": {"type": "string", "contentMediaType": JSON},
            "image": {"type": "string", "contentMediaType": "application/octet-stream"},
        },
        "required": ["job"],
        "additionalProperties": False,
    }


def batch_body(settings: Settings) -> Schema:
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


def batch_multipart(settings: Settings) -> Schema:
    """`batches.intake`: the batch as JSON in `batch` (its `input` a template), rows in `csv`."""
    return {
        "type": "object",
        "properties": {
            "batch": {"type": "string", "contentMediaType": JSON},
            "csv": {"type": "string", "contentMediaType": "text/csv"},
        },
        "required": ["batch", "csv"],
        "additionalProperties": False,
    }


_BATCH_OPTIONAL = {"webhook_url", "webhook_events", "item_webhooks", "concurrency", "metadata"}


def _batch_fields(name: str, settings: Settings) -> dict[str, Schema]:
    return {
        "type": {"const": name},
        **_delivery_fields(settings),
        "item_webhooks": {"type": "boolean", "default": False},
        "concurrency": {"type": ["integer", "null"], "minimum": 1},
    }


def replay_body() -> Schema:
    """`deliveries.replay_dlq`: ids, or a filter on host and time, or all."""
    moment = {"anyOf": [{"type": "number"}, MOMENT]}
    ids = {"type": "array", "maxItems": 1000, "items": {"type": "string"}}
    where: dict[str, Schema] = {"all": {"const": True}, "host": {"type": "string", "minLength": 1}}
    where |= {"since": moment, "until": moment, "endpoint_id": {"type": "string", "pattern": _EP}}
    return {
        "anyOf": [
            closed({"ids": ids}),
            closed(where, optional=where) | {"anyOf": [{"required": [n]} for n in where]},
        ]
    }


def endpoint_body(settings: Settings, *, creating: bool) -> Schema:
    """`endpoints.create_endpoint` and `update_endpoint` (service/endpoint_input.py)."""
    patterns = [*WEBHOOK_EVENT_TYPES, "*", "job.*", "batch.*", "endpoint.*"]
    header_value = {"type": "string", "maxLength": MAX_HEADER_VALUE_CHARS}
    properties: dict[str, Schema] = {
        "url": {"type": "string", "format": "uri", "maxLength": settings.max_url_length},
        "kind": {"enum": list(KINDS)},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
        "event_types": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_EVENT_TYPES,
            "items": {"enum": patterns},
        },
        "filter": {
            "type": "object",
            "properties": {
                "job_types": {"type": "array", "items": {"enum": sorted(JOB_TYPES)}},
                "metadata": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
            },
            "additionalProperties": False,
        },
        "enabled": {"type": "boolean"},
        "headers": {
            "type": "object",
            "maxProperties": MAX_HEADERS,
            "propertyNames": {"pattern": "^[A-Za-z0-9-]{1,64}$"},
            "additionalProperties": header_value if creating else nullable(header_value),
        },
        # Slack message objects per event type or pattern: see docs/webhooks.md.
        "templates": {"type": ["object", "null"]},
    }
    body: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {**body, "required": ["url"]} if creating else body


# Replies.


def ping_reply() -> Schema:
    """`endpoints.ping_endpoint`: one attempt, as `GET /v1/deliveries/{id}` shows attempts."""
    return closed(
        {
            "ok": {"type": "boolean"},
            "event_id": {"type": "string"},
            "status_code": {"type": ["integer", "null"]},
            "duration_ms": {"type": "number", "minimum": 0},
            "error_code": {"type": ["string", "null"]},
            "error_message": {"type": ["string", "null"]},
            "response_excerpt": {"type": "string"},
        }
    )


def job_reply() -> Schema:
    outputs = [OUTPUTS[name]() for name in sorted(JOB_TYPES)]
    view = job_schema(JOB_TYPES, outputs, SUBSCRIPTIONS)
    # `jobs._view` adds the job's deliveries to `job_view`.
    return with_field(view, "deliveries", {"type": "array", "items": delivery_schema()})


def batch_reply() -> Schema:
    return batch_schema(JOB_TYPES, SUBSCRIPTIONS)


def with_attempts(delivery: Schema) -> Schema:
    return with_field(delivery, "attempts", {"type": "array", "items": attempt_schema()})


def with_field(schema: Schema, name: str, extra: Schema) -> Schema:
    return {
        **schema,
        "properties": {**schema["properties"], name: extra},
        "required": [*schema["required"], name],
    }


def stream(owner: str) -> dict[str, Schema]:
    """One event of `events.sse_frame`: `data` is the JSON of the job or batch (or a delta)."""
    event = closed(
        {
            "id": EVENT_ID,
            "event": {"type": "string", "pattern": f"^{owner}\\."},
            "data": {"type": "string", "contentMediaType": JSON},
            "retry": {"type": "integer"},
        },
        optional={"retry"},
    )
    return {"text/event-stream": event}


def file_types() -> dict[str, Schema]:
    types = sorted(files.INLINE_TYPES | files.DOWNLOAD_TYPES) + ["application/octet-stream"]
    return {media_type: {"type": "string"} for media_type in types}


def unready() -> Schema:
    return closed({"status": {"const": "unavailable"}, "redis": {"type": "string"}})


def info(settings: Settings) -> Schema:
    """`system.info`: the limits are `Settings.limits()`, whatever they become."""
    number = {"type": "number"}
    return closed(
        {
            "name": {"const": "pixhook"},
            "version": {"type": "string"},
            "job_types": {"type": "array", "items": {"enum": sorted(JOB_TYPES)}},
            "output_formats": {"type": "array", "items": {"enum": sorted(imaging.OUTPUT_FORMATS)}},
            "input_formats": {"type": "array", "items": {"enum": sorted(imaging.INPUT_FORMATS)}},
            "providers": {"type": "array", "items": _provider()},
            "limits": closed({name: number for name in settings.limits()}),
            "webhooks": closed(
                {
                    "retry_schedule_s": {"type": "array", "items": number},
                    "signature": {"type": "string"},
                }
            ),
        }
    )


def _provider() -> Schema:
    """`system.providers`: one configured provider, its key never shown."""
    models = {"image.analyze": {"type": "string"}, "image.generate": {"type": "string"}}
    return closed(
        {
            "name": {"const": "openai"},
            "host": {"type": "string"},
            "models": closed(models),
            "api_key_set": {"type": "boolean"},
        }
    )


def links(param: str, *operation_ids: str) -> dict[str, Schema]:
    return {
        operation_id: {"operationId": operation_id, "parameters": {param: "$response.body#/id"}}
        for operation_id in operation_ids
    }


# Parameters.


def idempotency_key() -> Param:
    # Printable ASCII without edge spaces, which HTTP strips from header values.
    pattern = f"^[!-~]([ -~]{{0,{MAX_KEY_CHARS - 2}}}[!-~])?$"
    return Param(KEY_HEADER, "header", {"type": "string", "pattern": pattern})


REPLAYED = {REPLAYED_HEADER: {"required": False, "schema": {"const": "true"}}}
_CURSOR = {"type": "string", "pattern": "^[0-9]{1,18}$"}
CURSOR_OUT = {"type": ["string", "null"], "pattern": "^[0-9]+$"}
EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,19}(-[0-9]{1,19})?$"}
PAGING = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": deliveries.MAX_PAGE}),
    Param("cursor", "query", _CURSOR, "`next_cursor` of the previous page"),
)
DLQ_FILTER = (
    Param("host", "query", {"type": "string", "minLength": 1}),
    Param("endpoint_id", "query", {"type": "string", "pattern": _EP}),
    Param("since", "query", MOMENT, MOMENT_FORMS),
    Param("until", "query", MOMENT, MOMENT_FORMS),
)
