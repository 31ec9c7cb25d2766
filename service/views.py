"""What callers see of a job: the same shape in `GET /v1/jobs/{id}` and in webhook events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.jobs import Job
from service.storage import Storage
from webhooks.events import utc_timestamp
from webhooks.store import Delivery


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
    }
