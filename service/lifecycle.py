"""A job's end: its final status recorded, published to its stream and webhooks, and told to
whatever registered for it on `Runtime.job_end` (a batch records its item's result there).

The runner, a cancel, and a batch cancelling its items all end jobs through `end_job`, so that
none of them has to know who else cares; the jobs layer never imports those listeners.
"""

from __future__ import annotations

from typing import Any

from service.jobs.model import Job, JobStatus
from service.publishing import publish_status
from service.runtime import Runtime


async def end_job(runtime: Runtime, job_id: str, status: JobStatus, **changes: Any) -> Job | None:
    """Move the job to its final `status` and announce it; None (and nothing announced) when its
    status no longer allows it: it ended meanwhile, and whoever ended it announced it."""
    ended = await runtime.jobs.transition(job_id, status, **changes)
    if ended is not None:
        await announce_end(runtime, ended)
    return ended


async def announce_end(runtime: Runtime, job: Job) -> None:
    """Publish an ended job's final status and tell the listeners. Safe to repeat after a crash:
    the same event and deliveries, and listeners record an end once."""
    await publish_status(runtime, job)
    await runtime.job_end.notify(job)
