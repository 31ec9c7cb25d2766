"""Turning a validated submission into a stored, queued job: for `POST /v1/jobs` and batches."""

from __future__ import annotations

import logging
import time

from service.ids import new_id
from service.jobs.model import Job
from service.logs import bound
from service.queue import enqueue_job
from service.runtime import Runtime
from service.storage import job_file_key
from service.submission import Submission

log = logging.getLogger("pixhook.jobs")


async def launch_job(
    runtime: Runtime,
    client_id: str,
    submission: Submission,
    *,
    job_id: str | None = None,
    batch_id: str | None = None,
    batch_index: int | None = None,
    max_attempts: int = 1,
) -> Job:
    """Store the input and the record, then queue the job. With a given `job_id` it is safe to
    call again: a job that exists already is queued again, never created twice (arq ignores a
    job id it holds)."""
    job_id = job_id or new_id("job")
    created_at = time.time()
    input_key = None
    if submission.image is not None and submission.image.data is not None:
        input_key = job_file_key(client_id, job_id, created_at, "input")
        # Stored before the record exists, so a worker never sees a job without its input.
        await runtime.storage.put(
            input_key, submission.image.data, media_type="application/octet-stream"
        )
    job = Job(
        id=job_id,
        type=submission.type,
        client_id=client_id,
        input=submission.input_record(),
        input_key=input_key,
        created_at=created_at,
        metadata=submission.metadata,
        reference=submission.reference,
        output_name=submission.output_name,
        webhook_url=submission.webhook_url,
        webhook_events=submission.webhook_events,
        batch_id=batch_id,
        batch_index=batch_index,
        max_attempts=max_attempts,
        # The worker logs the job under the request that created it (service/logs.py).
        request_id=bound("request_id"),
    )
    if not await runtime.jobs.create(job):
        existing = await runtime.jobs.get(job_id)
        job = existing if existing is not None else job
    await enqueue_job(runtime.redis, job.id, attempt=job.attempt)
    log.info(
        "queued %s job %s",
        job.type,
        job.id,
        extra={"job_id": job.id, "client_id": client_id, "batch_id": batch_id},
    )
    return job
