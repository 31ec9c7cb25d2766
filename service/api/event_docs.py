"""The payload reference at the end of docs/webhooks.md, generated from the event models:
every event type with an example body and its schema.

    python -m service.api.event_docs docs/webhooks.md

rewrites the block between the markers; tests/test_event_payloads.py fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service.api.event_payloads import EVENTS, event_schemas
from webhooks import event_body

_WIDTH = 96
START, END = "<!-- events:start -->", "<!-- events:end -->"
REGENERATE = "python -m service.api.event_docs docs/webhooks.md"

_AT = "2026-03-02T09:30:00.000Z"
_JOB: dict[str, Any] = {
    "id": "job_9m2xk4q7vd",
    "type": "image.transform",
    "status": "succeeded",
    "created_at": "2026-03-02T09:29:59.412Z",
    "started_at": "2026-03-02T09:29:59.530Z",
    "finished_at": _AT,
    "input": {
        "image": {"source": "url", "url": "https://shop.example.com/p/42.jpg"},
        "mode": "fit",
        "max_side": 800,
        "format": "webp",
        "quality": 85,
    },
    "output": {
        "images": [
            {
                "name": "default",
                "media_type": "image/webp",
                "format": "webp",
                "width": 800,
                "height": 600,
                "bytes": 48213,
                "url": "https://pixhook.example.com/files/…?expires=…&signature=…",
            }
        ]
    },
    "error": None,
    "metadata": {"sku": "42"},
    "reference": "SKU-42",
    "webhook_url": "https://shop.example.com/hooks/pixhook",
    "webhook_events": ["completed"],
    "sequence": 2,
    "batch": None,
    "attempt": 1,
    "max_attempts": 1,
    "earlier_errors": [],
    "usage": None,
    "cost_usd": None,
    "urls": {
        "self": "https://pixhook.example.com/v1/jobs/job_9m2xk4q7vd",
        "events": "https://pixhook.example.com/v1/jobs/job_9m2xk4q7vd/events",
        "cancel": "https://pixhook.example.com/v1/jobs/job_9m2xk4q7vd/cancel",
        "console": "https://pixhook.example.com/console/jobs/job_9m2xk4q7vd",
    },
}
_UNFINISHED = {"finished_at": None, "output": None}
_BATCH: dict[str, Any] = {
    "id": "bat_5tq8w2hn3c",
    "object": "batch",
    "type": "image.generate",
    "status": "completed",
    "created_at": "2026-03-02T09:00:00.000Z",
    "started_at": "2026-03-02T09:00:00.050Z",
    "finished_at": _AT,
    "counts": {
        "total": 100,
        "pending": 0,
        "in_flight": 0,
        "succeeded": 99,
        "failed": 1,
        "canceled": 0,
    },
    "progress": 1.0,
    "concurrency": 8,
    "item_attempts": 3,
    "retries": 0,
    "item_webhooks": False,
    "webhook_url": "https://cms.example.com/hooks/pixhook",
    "webhook_events": ["progress", "completed"],
    "metadata": {"campaign": "spring"},
    "failures": [
        {
            "index": 17,
            "error": {"code": "PROVIDER_REJECTED", "message": "the provider refused the prompt"},
        }
    ],
    "summary": {
        "by_status": {"succeeded": 99, "failed": 1, "canceled": 0, "running": 0, "pending": 0},
        "by_error_code": {"PROVIDER_REJECTED": 1},
        "success_rate": 0.99,
        "latency": {"p50_ms": 8420.5, "p95_ms": 14890.2},
        "throughput_per_s": 0.055,
    },
    "usage": {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0},
    "cost_usd": 0.0,
    "unpriced_items": 0,
    "max_cost": None,
    "paused_reason": None,
    "paused_at": None,
    "paused_provider": None,
    "results": {
        "url": "https://pixhook.example.com/files/…?expires=…&signature=…",
        "media_type": "application/x-ndjson",
        "lines": 100,
    },
    "urls": {
        "self": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c",
        "events": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c/events",
        "cancel": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c/cancel",
        "items": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c/items",
        "retry": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c/retry",
        "resume": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c/resume",
        "results_csv": "https://pixhook.example.com/v1/batches/bat_5tq8w2hn3c/results.csv",
    },
}
# An analysis batch that reached its budget with 58 of its 100 items not yet started.
_PAUSED_BATCH: dict[str, Any] = {
    "type": "image.analyze",
    "status": "paused",
    "finished_at": None,
    "results": None,
    "progress": 0.42,
    "counts": _BATCH["counts"] | {"pending": 58, "in_flight": 0, "succeeded": 41},
    "failures": [],
    "usage": {"input_tokens": 34850, "output_tokens": 4920, "cached_input_tokens": 0},
    "cost_usd": 0.00818,
    "max_cost": 0.008,
    "paused_reason": "budget",
    "paused_at": _AT,
    "summary": _BATCH["summary"]
    | {
        "by_status": {"succeeded": 41, "failed": 1, "canceled": 0, "running": 0, "pending": 58},
        "success_rate": 0.9762,
    },
}
_RUNNING_BATCH = {"status": "running", "finished_at": None, "results": None, "progress": 0.42}
_EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "job.started": _JOB | _UNFINISHED | {"status": "running", "sequence": 1},
    "job.completed": _JOB,
    "job.failed": _JOB
    | _UNFINISHED
    | {
        "status": "failed",
        "finished_at": _AT,
        "error": {
            "code": "IMAGE_FETCH_FAILED",
            "message": "the image URL answered 404",
            "retryable": False,
        },
    },
    "job.canceled": _JOB | _UNFINISHED | {"status": "canceled", "finished_at": _AT},
    "batch.started": _BATCH
    | _RUNNING_BATCH
    | {
        "progress": 0.0,
        "counts": _BATCH["counts"] | {"pending": 92, "in_flight": 8, "succeeded": 0, "failed": 0},
        "failures": [],
        "summary": _BATCH["summary"]
        | {
            "by_status": {"succeeded": 0, "failed": 0, "canceled": 0, "running": 8, "pending": 92},
            "by_error_code": {},
            "success_rate": None,
            "latency": {"p50_ms": None, "p95_ms": None},
            "throughput_per_s": None,
        },
    },
    "batch.progress": _BATCH
    | _RUNNING_BATCH
    | {"counts": _BATCH["counts"] | {"pending": 50, "in_flight": 8, "succeeded": 41}},
    "batch.completed": _BATCH,
    "batch.canceled": _BATCH | {"status": "canceled"},
    "batch.paused": _BATCH | _PAUSED_BATCH,
    "batch.resumed": _BATCH
    | _PAUSED_BATCH
    | {"status": "running", "paused_reason": None, "paused_at": None, "max_cost": 10.0},
    "batch.failed": _BATCH
    | {
        "status": "failed",
        "started_at": None,
        "counts": dict.fromkeys(_BATCH["counts"], 0),
        "progress": 0.0,
        "failures": [],
        "results": None,
        "items_url": "https://cms.example.com/exports/catalogue.csv",
        "error": {
            "code": "UNKNOWN_COLUMN",
            "message": "the CSV file has no column 'sku'; its columns: id, image",
            "field": "reference_column",
        },
    },
    "endpoint.disabled": {
        "id": "ep_7hx2m9",
        "object": "endpoint",
        "host": "cms.example.com",
        "description": "the CMS",
        "reason": "every attempt for 5.0 days failed (the last: receiver answered 502)",
        "failing_since": "2026-02-25T09:30:00.000Z",
        "disabled_at": _AT,
    },
    "ping": {"endpoint_id": "ep_7hx2m9", "message": "a test event from pixhook"},
}


def example_body(event_type: str) -> dict[str, Any]:
    """An example of the event as sent, checked against its model."""
    body = event_body(
        event_type, f"evt_{event_type.replace('.', '_')}", _EXAMPLE_DATA[event_type], _AT
    )
    parsed: dict[str, Any] = json.loads(body)
    EVENTS[event_type].model_validate(parsed)
    return parsed


def reference() -> str:
    """The block between the markers, markers included."""
    lines = [START, "", "## Payload reference", ""]
    lines.append(
        f"Generated from the event models (service/api/event_payloads.py) by `{REGENERATE}`."
    )
    lines += [
        "The same schemas are the `webhooks` section of `/openapi.json`; a `$ref` names one of",
        "the schemas listed last, as `components/schemas` of that document does.",
        "",
    ]
    schemas = event_schemas()
    for event_type, model in EVENTS.items():
        lines += [f"### `{event_type}`", "", _doc(model), ""]
        lines += _json_block(example_body(event_type))
        lines += ["", f"Its schema, `{model.__name__}`:", ""]
        lines += [*_json_block(schemas.pop(model.__name__)), ""]
    lines += ["### Schemas", ""]
    for name, schema in schemas.items():
        lines += [f"#### {name}", "", *_json_block(schema), ""]
    return "\n".join([*lines, END])


def _doc(model: type) -> str:
    return " ".join((model.__doc__ or "").split())


def _json_block(value: Any) -> list[str]:
    return ["```json", _compact(value, ""), "```"]


def _compact(value: Any, indent: str) -> str:
    """JSON indented by level, with what fits on a line kept on one line."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(indent) + len(flat) <= _WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_compact(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [inner + _compact(v, inner) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"


def with_reference(text: str) -> str:
    """`text` with its block replaced, or the block appended when it has none."""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        return head + reference() + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + reference() + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {REGENERATE}", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(with_reference(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
