"""Turning job status changes into live stream entries and webhook deliveries."""

from __future__ import annotations

from typing import Any, get_args

from service.jobs.model import Job
from service.jobs.streams import append_once
from service.jobs.view_models import Subscription
from service.jobs.views import job_view
from service.runtime import Runtime
from webhooks import ENDPOINT_DISABLED, Event

# status -> (event type, the `webhook_events` subscription that asks for it)
STATUS_EVENTS = {
    "running": ("job.started", "started"),
    "succeeded": ("job.completed", "completed"),
    "failed": ("job.failed", "completed"),
    "canceled": ("job.canceled", "completed"),
}
SUBSCRIPTIONS = frozenset(get_args(Subscription))
# Only in the live stream: no webhook subscription asks for it.
QUEUED_EVENT = "job.queued"
BATCH_EVENTS = (
    "batch.started",
    "batch.progress",
    "batch.completed",
    "batch.canceled",
    "batch.failed",
    "batch.paused",
    "batch.resumed",
)
# What an endpoint can subscribe to (a `ping` comes only from its test send).
WEBHOOK_EVENT_TYPES = (
    *(event_type for event_type, _ in STATUS_EVENTS.values()),
    *BATCH_EVENTS,
    ENDPOINT_DISABLED,
)


def event_id_for(job: Job) -> str:
    """Derived from the job and its sequence, so re-publishing after a crash is the same event."""
    return f"evt_{job.id.removeprefix('job_')}_{job.sequence}"


async def stream_status(runtime: Runtime, job: Job, data: dict[str, Any] | None = None) -> None:
    """Add the job's current status to its live stream; a `sequence` already there is not added
    again, so publishing twice (a rerun after a crash) is one entry."""
    event_type = QUEUED_EVENT if job.status == "queued" else STATUS_EVENTS[job.status][0]
    if data is None:
        data = job_view(job, runtime.storage, runtime.settings.api.public_url)
    ttl_s = runtime.settings.jobs.event_retention_s
    await append_once(runtime.redis, job.id, job.sequence, event_type, data, ttl_s)


async def publish_status(runtime: Runtime, job: Job) -> list[str]:
    """Stream the job's current status and queue its webhooks: to the job's URL if it asks for
    this event, and to every endpoint of its client that matches it. The delivery ids."""
    event_type, subscription = STATUS_EVENTS[job.status]
    data = job_view(job, runtime.storage, runtime.settings.api.public_url)
    # Streamed whether or not a webhook wants it: watchers see every status change.
    await stream_status(runtime, job, data)
    wanted = job.webhook_url is not None and subscription in job.webhook_events
    delivery_ids = await runtime.engine.publish(
        Event(event_type, event_id_for(job), data),
        owner=job.client_id,
        direct_url=job.webhook_url if wanted else None,
        endpoints=await runtime.endpoints.owned_by(job.client_id),
    )
    for delivery_id in delivery_ids:
        await runtime.jobs.add_delivery(job.id, delivery_id)
    return delivery_ids
