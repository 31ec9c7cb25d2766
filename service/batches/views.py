"""What callers see of a batch, in `GET /v1/batches/{id}` and in batch events, and its schema."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, get_args

from service.batches.store import Batch, BatchStatus
from service.runtime import Runtime
from service.views import iso

RESULTS_MEDIA_TYPE = "application/x-ndjson"


def batch_view(batch: Batch, failures: list[dict[str, Any]], runtime: Runtime) -> dict[str, Any]:
    """A batch as callers see it, in `GET /v1/batches/{id}` and in batch events."""
    public_url = runtime.settings.public_url
    ended = batch.status != "running"
    results = None
    if ended:
        results = {
            "url": runtime.storage.url(batch.results_key, RESULTS_MEDIA_TYPE),
            "media_type": RESULTS_MEDIA_TYPE,
            "lines": batch.result_lines,
        }
    return {
        "id": batch.id,
        "object": "batch",
        "type": batch.type,
        "status": batch.status,
        "created_at": iso(batch.created_at),
        "started_at": iso(batch.started_at),
        "finished_at": iso(batch.finished_at),
        "counts": {
            "total": batch.total,
            "pending": batch.total - batch.done - batch.in_flight,
            "in_flight": batch.in_flight,
            "succeeded": batch.succeeded,
            "failed": batch.failed,
            "canceled": batch.canceled,
        },
        "progress": round(batch.done / batch.total, 4) if batch.total else 1.0,
        "concurrency": batch.concurrency,
        "item_webhooks": batch.item_webhooks,
        "webhook_url": batch.webhook_url,
        "webhook_events": list(batch.webhook_events),
        "metadata": batch.metadata,
        "failures": failures,
        "results": results,
        "urls": {
            "self": f"{public_url}/v1/batches/{batch.id}",
            "events": f"{public_url}/v1/batches/{batch.id}/events",
            "cancel": f"{public_url}/v1/batches/{batch.id}/cancel",
        },
    }


def batch_schema(types: Collection[str], subscriptions: Collection[str]) -> dict[str, Any]:
    """JSON Schema of `batch_view`, for /openapi.json: change them together."""
    count = {"type": "integer", "minimum": 0}
    url = {"type": "string", "format": "uri"}
    stamp = {"type": "string", "format": "date-time"}
    error = _closed(
        {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"]},
        },
        optional={"field"},  # a job's own error has none; an item refused at intake has one
    )
    counts = ("total", "pending", "in_flight", "succeeded", "failed", "canceled")
    return _closed(
        {
            "id": {"type": "string"},
            "object": {"const": "batch"},
            "type": {"enum": sorted(types)},
            "status": {"enum": list(get_args(BatchStatus))},
            "created_at": stamp,
            "started_at": {"anyOf": [stamp, {"type": "null"}]},
            "finished_at": {"anyOf": [stamp, {"type": "null"}]},
            "counts": _closed({name: count for name in counts}),
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "concurrency": {"type": "integer", "minimum": 1},
            "item_webhooks": {"type": "boolean"},
            "webhook_url": {"type": ["string", "null"]},
            "webhook_events": {"type": "array", "items": {"enum": sorted(subscriptions)}},
            "metadata": {"type": "object"},
            "failures": {
                "type": "array",
                "items": _closed({"index": {"type": "integer", "minimum": 0}, "error": error}),
            },
            "results": {
                "anyOf": [
                    _closed(
                        {"url": url, "media_type": {"const": RESULTS_MEDIA_TYPE}, "lines": count}
                    ),
                    {"type": "null"},
                ]
            },
            "urls": _closed({"self": url, "events": url, "cancel": url}),
        }
    )


def _closed(properties: dict[str, Any], *, optional: Collection[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }
