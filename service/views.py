"""What callers see of a job: the same shape in `GET /v1/jobs/{id}` and in webhook events."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from service.jobs import Job, JobStatus
from service.storage import Storage
from webhooks.events import utc_timestamp
from webhooks.store import STATUSES, Delivery


def iso(moment: float | None) -> str | None:
    return None if moment is None else utc_timestamp(datetime.fromtimestamp(moment, UTC))


def job_view(job: Job, storage: Storage, public_url: str) -> dict[str, Any]:
    """The public job: file keys turned into fresh signed URLs, times as ISO 8601."""
    return {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "input": job.input,
        "output": _output_view(job.output, storage),
        "error": job.error,
        "metadata": job.metadata,
        "webhook_url": job.webhook_url,
        "webhook_events": list(job.webhook_events),
        "sequence": job.sequence,
        "batch": None if job.batch_id is None else {"id": job.batch_id, "index": job.batch_index},
        "urls": {
            "self": f"{public_url}/v1/jobs/{job.id}",
            "events": f"{public_url}/v1/jobs/{job.id}/events",
            "cancel": f"{public_url}/v1/jobs/{job.id}/cancel",
            # For people (a Slack message links it): the console asks them to sign in, where
            # the API would answer 401.
            "console": f"{public_url}/console/jobs/{job.id}",
        },
    }


def _output_view(output: dict[str, Any] | None, storage: Storage) -> dict[str, Any] | None:
    if output is None:
        return None
    images = [
        {
            **{k: v for k, v in image.items() if k != "key"},
            "url": storage.url(image["key"], image["media_type"]),
        }
        for image in output.get("images", [])
    ]
    return {**output, "images": images}


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """A delivery as callers see it: everything but the payload."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "host": delivery.host,
        "status": delivery.status,
        "attempt_count": delivery.attempts,
        "replays": delivery.replays,
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "dead_at": iso(delivery.dead_at),
        "last_error": delivery.last_error,
        "last_status_code": delivery.last_status_code,
        "endpoint_id": delivery.endpoint_id,
    }


# The JSON Schemas of the views above, for /openapi.json: change a view and its schema together.

TIMESTAMP: dict[str, Any] = {"type": "string", "format": "date-time"}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def job_schema(
    types: Collection[str], outputs: Sequence[dict[str, Any]], subscriptions: Collection[str]
) -> dict[str, Any]:
    """`job_view`: `outputs` are the job types' output schemas."""
    url = {"type": "string", "format": "uri"}
    return _closed(
        {
            "id": {"type": "string"},
            "type": {"enum": sorted(types)},
            "status": {"enum": list(get_args(JobStatus))},
            "created_at": TIMESTAMP,
            "started_at": _nullable(TIMESTAMP),
            "finished_at": _nullable(TIMESTAMP),
            # The parameters as `parse_input` normalised them, and the image as a description.
            "input": {"type": "object"},
            "output": {"anyOf": [*outputs, {"type": "null"}]},
            "error": _nullable(
                _closed({"code": {"type": "string"}, "message": {"type": "string"}})
            ),
            "metadata": {"type": "object"},
            "webhook_url": {"type": ["string", "null"]},
            "webhook_events": {"type": "array", "items": {"enum": sorted(subscriptions)}},
            "sequence": {"type": "integer", "minimum": 0},
            "batch": _nullable(
                _closed({"id": {"type": "string"}, "index": {"type": ["integer", "null"]}})
            ),
            "urls": _closed({"self": url, "events": url, "cancel": url, "console": url}),
        }
    )


def delivery_schema() -> dict[str, Any]:
    """`delivery_view`."""
    return _closed(
        {
            "id": {"type": "string"},
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "url": {"type": "string"},
            "host": {"type": "string"},
            "status": {"enum": list(STATUSES)},
            "attempt_count": {"type": "integer", "minimum": 0},
            "replays": {"type": "integer", "minimum": 0},
            "created_at": TIMESTAMP,
            "next_attempt_at": _nullable(TIMESTAMP),
            "dead_at": _nullable(TIMESTAMP),
            "last_error": {"type": ["string", "null"]},
            "last_status_code": {"type": ["integer", "null"]},
            "endpoint_id": {"type": ["string", "null"]},
        }
    )


def attempt_schema() -> dict[str, Any]:
    """One of `attempts` in `GET /v1/deliveries/{id}` (service/routes/deliveries.py)."""
    return _closed(
        {
            "number": {"type": "integer"},
            "started_at": TIMESTAMP,
            "duration_ms": {"type": "number"},
            "status_code": {"type": ["integer", "null"]},
            "error_code": {"type": ["string", "null"]},
            "error_message": {"type": ["string", "null"]},
            "response_excerpt": {"type": "string"},
        }
    )
