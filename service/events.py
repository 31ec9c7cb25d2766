"""Turning job status changes into webhook deliveries."""

from __future__ import annotations

from service.jobs import Job
from service.runtime import Runtime
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


def event_id_for(job: Job) -> str:
    """Derived from the job and its sequence, so re-publishing after a crash is the same event."""
    return f"evt_{job.id.removeprefix('job_')}_{job.sequence}"


async def publish_status(runtime: Runtime, job: Job) -> str | None:
    """Queue the webhook for the job's current status; the delivery id, or None if not wanted."""
    event_type, subscription = STATUS_EVENTS[job.status]
    if job.webhook_url is None or subscription not in job.webhook_events:
        return None
    event_id = event_id_for(job)
    data = job_view(job, runtime.storage, runtime.settings.public_url)
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
