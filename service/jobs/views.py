"""What callers see of a job: the same shape in `GET /v1/jobs/{id}` and in webhook events.

The shapes are the models of service/jobs/view_models.py; the functions here fill them in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.jobs.model import Job
from service.jobs.view_models import AttemptView, DeliveryView, JobView
from service.storage import Storage
from webhooks import Attempt, Delivery, utc_timestamp


def iso(moment: float | None) -> str | None:
    return None if moment is None else utc_timestamp(datetime.fromtimestamp(moment, UTC))


def job_view(job: Job, storage: Storage, public_url: str) -> dict[str, Any]:
    """The public job: file keys turned into fresh signed URLs, times as ISO 8601."""
    return JobView.render(job_fields(job, storage, public_url))


def job_fields(job: Job, storage: Storage, public_url: str) -> dict[str, Any]:
    """The fields of `JobView`, not yet checked: for a view that adds some (`JobWithDeliveries`)."""
    batch = None if job.batch_id is None else {"id": job.batch_id, "index": job.batch_index}
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
        "reference": job.reference,
        "webhook_url": job.webhook_url,
        "webhook_events": list(job.webhook_events),
        "sequence": job.sequence,
        "batch": batch,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "earlier_errors": job.earlier_errors,
        "usage": job.usage,
        "cost_usd": job.cost_usd,
        "urls": {
            "self": f"{public_url}/v1/jobs/{job.id}",
            "events": f"{public_url}/v1/jobs/{job.id}/events",
            "cancel": f"{public_url}/v1/jobs/{job.id}/cancel",
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
    pending = delivery.status == "pending"
    return DeliveryView.render(
        {
            "id": delivery.id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "url": delivery.url,
            "host": delivery.host,
            "status": delivery.status,
            "attempt_count": delivery.attempts,
            "replays": delivery.replays,
            "created_at": iso(delivery.created_at),
            "next_attempt_at": iso(delivery.next_attempt_at) if pending else None,
            "dead_at": iso(delivery.dead_at),
            "last_error": delivery.last_error,
            "last_status_code": delivery.last_status_code,
            "endpoint_id": delivery.endpoint_id,
        }
    )


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    """One attempt, as `GET /v1/deliveries/{id}` lists them."""
    return AttemptView.render(
        {
            "number": attempt.number,
            "started_at": iso(attempt.started_at),
            "duration_ms": attempt.duration_ms,
            "status_code": attempt.status_code,
            "error_code": attempt.error_code,
            "error_message": attempt.error_message,
            "response_excerpt": attempt.response_excerpt,
        }
    )
