"""Turning job status changes into live stream entries and webhook deliveries."""

from __future__ import annotations

from typing import Any

from service.jobs import Job
from service.runtime import Runtime
from service.streams import append_once
from service.views import job_view
from webhooks.events import event_body, utc_timestamp
from webhooks.outbox import submit

# status -> (event type, the `webhook_events` subscription that asks for it)
STATUS_EVENTS = {
    "running": ("job.started", "started"),
    "succeeded": ("job.completed", "completed"),
    "failed": ("job.failed", "completed"),
    "canceled": ("job.canceled", "completed"),
}
SUBSCRIPTIONS = frozenset({"started", "progress", "completed"})
# Only in the live stream: no webhook subscription asks for it.
QUEUED_EVENT = "job.queued"


def event_id_for(job: Job) -> str:
    """Derived from the job and its sequence, so re-publishing after a crash is the same event."""
    return f"evt_{job.id.removeprefix('job_')}_{job.sequence}"


async def stream_status(runtime: Runtime, job: Job, data: dict[str, Any] | None = None) -> None:
    """Add the job's current status to its live stream; a `sequence` already there is not added
    again, so publishing twice (a rerun after a crash) is one entry."""
    event_type = QUEUED_EVENT if job.status == "queued" else STATUS_EVENTS[job.status][0]
    if data is None:
        data = job_view(job, runtime.storage, runtime.settings.public_url)
    ttl_s = runtime.settings.event_retention_s
    await append_once(runtime.redis, job.id, job.sequence, event_type, data, ttl_s)


async def publish_status(runtime: Runtime, job: Job) -> str | None:
    """Stream the job's current status and queue its webhook; the delivery id, or None if the
    job's webhook does not ask for it."""
    event_type, subscription = STATUS_EVENTS[job.status]
    data = job_view(job, runtime.storage, runtime.settings.public_url)
    # Streamed whether or not a webhook wants it: watchers see every status change.
    await stream_status(runtime, job, data)
    if job.webhook_url is None or subscription not in job.webhook_events:
        return None
    event_id = event_id_for(job)
    delivery_id = await submit(
        runtime.deliveries,
        event_id=event_id,
        event_type=event_type,
        owner=job.client_id,
        url=job.webhook_url,
        payload=event_body(event_type, event_id, data, utc_timestamp()),
    )
    await runtime.jobs.add_delivery(job.id, delivery_id)
    return delivery_id
