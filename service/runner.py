"""Running one job on a worker, from `queued` to a final status and its webhook."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import partial

from service import imaging
from service.backoff import backoff_s
from service.errors import JobFailure, NotFound, ServiceUnavailable
from service.fetch import fetch_image
from service.jobs.metrics import JobMetrics
from service.jobs.model import TERMINAL, Job
from service.jobs.streams import append_event
from service.lifecycle import announce_end, end_job, requeue_job
from service.logs import bind
from service.publishing import publish_status
from service.retrying_storage import RetryingStorage
from service.runtime import Runtime
from service.storage import StorageUnavailable
from service.tasks import JOB_TYPES
from service.tasks.context import TaskContext, inspect_image

log = logging.getLogger("pixhook.jobs")


async def execute(runtime: Runtime, job_id: str, attempt: int | None = None) -> None:
    """Safe to call again for the same job: arq may run it twice after a worker dies. `attempt`
    is the one queued: an arq job left from an attempt before (a retry deferred, then the job
    canceled and retried) runs nothing."""
    job = await runtime.jobs.get(job_id)
    if job is None:
        log.warning("job %s is gone (expired?); nothing to run", job_id, extra={"job_id": job_id})
        return
    if attempt is not None and attempt != job.attempt and job.status not in TERMINAL:
        log.info("job %s: attempt %d was queued, the job is at %d", job_id, attempt, job.attempt)
        return
    # The job's lines carry the request that created it, as the API's lines for it do.
    context = bind(
        job_id=job.id, client_id=job.client_id, batch_id=job.batch_id, request_id=job.request_id
    )
    with context:
        await _resume(runtime, job)


async def _resume(runtime: Runtime, job: Job) -> None:
    job_id = job.id
    if job.status in TERMINAL:
        # A rerun after a crash: the job ended, but its final event may not have been queued.
        await announce_end(runtime, job)
        return
    if job.status == "queued":
        started = await runtime.jobs.transition(job_id, "running")
        if started is None:
            await _publish_latest(runtime, job_id)
            return
        job = started
    # Also on a rerun of a job left `running`: the run cut short may have ended before its
    # `job.started` was queued. Published again, it is the same event and the same deliveries.
    await publish_status(runtime, job)
    log.info("running %s job %s", job.type, job.id)
    await _finish(runtime, job)


async def _finish(runtime: Runtime, job: Job) -> None:
    try:
        async with asyncio.timeout(runtime.settings.jobs.timeout_s):
            output = await _run(runtime, job)
    except JobFailure as exc:
        failure = exc
    except ServiceUnavailable as exc:
        if isinstance(exc, StorageUnavailable):
            await JobMetrics(runtime.redis).storage_failed(exc.operation)
        failure = JobFailure(exc.message, code=exc.code)
    except TimeoutError:
        failure = JobFailure(
            f"the job ran longer than {runtime.settings.jobs.timeout_s:g}s", code="JOB_TIMEOUT"
        )
    except Exception:
        log.exception("job %s failed unexpectedly", job.id)
        failure = JobFailure("the job failed unexpectedly", code="INTERNAL_ERROR")
    else:
        await _ended(runtime, job, await end_job(runtime, job.id, "succeeded", output=output))
        return
    if failure.retryable and job.attempt < job.max_attempts:
        await _try_again(runtime, job, failure)
        return
    await _ended(runtime, job, await end_job(runtime, job.id, "failed", error=failure.as_error()))


async def _try_again(runtime: Runtime, job: Job, failure: JobFailure) -> None:
    """A failure that may pass, with attempts left: the job is queued again after a backoff,
    and nothing is announced as final (a batch records only the item's last outcome)."""
    batches = runtime.settings.batches
    first_s, most_s = batches.item_retry_backoff_s, batches.item_retry_max_backoff_s
    wait_s = backoff_s(job.attempt, first_s, most_s)
    failed = replace(job, error=failure.as_error())
    queued = await requeue_job(runtime, failed, max_attempts=job.max_attempts, defer_s=wait_s)
    if queued is None:
        await _ended(runtime, job, None)
        return
    log.info(
        "job %s attempt %d failed (%s); attempt %d in %.1fs",
        job.id,
        job.attempt,
        failure.code,
        queued.attempt,
        wait_s,
    )


async def _ended(runtime: Runtime, job: Job, finished: Job | None) -> None:
    if finished is None:
        # Canceled while it ran: the cancel already announced the final status.
        log.info("job %s was canceled while it ran", job.id)
        await _publish_latest(runtime, job.id)
        return
    code = f" ({finished.error['code']})" if finished.error else ""
    log.info("job %s %s%s", job.id, finished.status, code)


async def _run(runtime: Runtime, job: Job) -> dict[str, object]:
    # Outputs are written through storage outages until this much of the job's time has gone;
    # the rest is left to record the failure (and for image.generate, keep what was paid for).
    writes_until = asyncio.get_running_loop().time() + runtime.settings.jobs.timeout_s * 0.9
    job_type = JOB_TYPES[job.type]
    image = await _input_image(runtime, job) if "image" in job.input else b""
    emit = partial(
        append_event, runtime.redis, job.id, ttl_s=runtime.settings.jobs.event_retention_s
    )
    storage = RetryingStorage(
        runtime.storage, writes_until, JobMetrics(runtime.redis).storage_failed
    )
    context = TaskContext(
        storage,
        runtime.settings,
        runtime.redis,
        emit,
        runtime.provider_http,
        runtime.decode_budget,
    )
    return await job_type.run(job, image, context)


async def _input_image(runtime: Runtime, job: Job) -> bytes:
    settings = runtime.settings
    if job.input_key is None:
        image = await fetch_image(
            job.input["image"]["url"],
            settings.deliveries.allow_private_networks,
            max_bytes=settings.limits.max_image_bytes,
            connect_timeout_s=settings.deliveries.connect_timeout_s,
            deadline_s=settings.limits.image_fetch_timeout_s,
        )
    else:
        try:
            image = await runtime.storage.get(job.input_key)
        except NotFound as exc:
            raise JobFailure(
                "the job's input image is no longer stored", code="INPUT_GONE"
            ) from exc
    try:
        # Judged by its bytes, never by the URL's extension or a Content-Type header.
        await inspect_image(image, settings)
    except imaging.ImageRejected as exc:
        raise JobFailure(str(exc), code=exc.code) from exc
    return image


async def _publish_latest(runtime: Runtime, job_id: str) -> None:
    latest = await runtime.jobs.get(job_id)
    if latest is not None and latest.status in TERMINAL:
        await announce_end(runtime, latest)
