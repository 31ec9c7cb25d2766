"""A job's end: its final status recorded, published to its stream and webhooks, and told to
whatever registered for it on `Runtime.job_end` (a batch records its item's result there).

The runner, a cancel, and a batch cancelling its items all end jobs through `end_job`, so that
none of them has to know who else cares; the jobs layer never imports those listeners.
"""

from __future__ import annotations

from typing import Any

from service.jobs.model import Job, JobStatus
from service.providers.usage import output_usage
from service.publishing import publish_status, stream_status
from service.queue import enqueue_job
from service.runtime import Runtime


async def end_job(runtime: Runtime, job_id: str, status: JobStatus, **changes: Any) -> Job | None:
    """Move the job to its final `status` and announce it; None (and nothing announced) when its
    status no longer allows it: it ended meanwhile, and whoever ended it announced it."""
    spent = output_usage(changes.get("output"))
    if spent is not None:
        changes |= {"usage": spent.usage.as_dict(), "cost_usd": spent.cost_usd}
    ended = await runtime.jobs.transition(job_id, status, **changes)
    if ended is not None:
        await announce_end(runtime, ended)
    return ended


async def announce_end(runtime: Runtime, job: Job) -> None:
    """Publish an ended job's final status and tell the listeners. Safe to repeat after a crash:
    the same event and deliveries, and listeners record an end once."""
    await publish_status(runtime, job)
    await runtime.job_end.notify(job)


async def requeue_job(
    runtime: Runtime, job: Job, *, max_attempts: int, defer_s: float = 0.0
) -> Job | None:
    """Run the job again as its next attempt, the same id: from `running` after a transient
    failure, or from `failed` or `canceled` when a caller asks. The error that ended the last
    attempt joins `earlier_errors`; None when the job's status no longer allows it."""
    earlier = [*job.earlier_errors, job.error] if job.error else list(job.earlier_errors)
    queued = await runtime.jobs.transition(
        job.id,
        "queued",
        attempt=job.attempt + 1,
        max_attempts=max(max_attempts, job.attempt + 1),
        earlier_errors=earlier,
        error=None,
        output=None,
        usage=None,
        cost_usd=None,
        started_at=None,
        finished_at=None,
    )
    if queued is None:
        return None
    # The live stream shows it queued again; no webhook asks for that.
    await stream_status(runtime, queued)
    await enqueue_job(runtime.redis, queued.id, attempt=queued.attempt, defer_s=defer_s)
    return queued
