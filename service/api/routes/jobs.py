"""`/v1/jobs`: submit, read and cancel jobs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.admission import job_slot, require_room
from service.api.authentication import client_of
from service.api.bodies import read_job_request
from service.api.client_routes import ClientRoute
from service.api.idempotency import idempotent
from service.api.operations import (
    BODY_ERRORS,
    IDEMPOTENCY_ERRORS,
    JSON,
    MULTIPART,
    REPLAYED,
    SHAPE_ERRORS,
    URL_ERRORS,
    Named,
    Operation,
    Reply,
    documented,
    idempotency_key,
    links,
)
from service.errors import InvalidInput, NotFound
from service.jobs.model import TERMINAL, Job
from service.jobs.store import JobStore
from service.jobs.view_models import JobWithDeliveries
from service.jobs.views import delivery_view, job_fields
from service.launch import launch_job
from service.lifecycle import end_job, requeue_job
from service.runtime import runtime
from service.submission import JobRequest, JobUpload, read_submission

_JOB = JobWithDeliveries
_MISSING = {404: ("JOB_NOT_FOUND",)}
_IMAGE_ERRORS = ("MISSING_IMAGE", "IMAGE_TOO_LARGE", "INVALID_IMAGE", "TOO_MANY_FRAMES")


@documented(
    Operation(
        "Submit a job",
        (Reply(202, "queued", {JSON: _JOB}, REPLAYED, links("job_id", "get_job", "cancel_job")),),
        body={JSON: Named("JobRequest", JobRequest), MULTIPART: JobUpload},
        params=(idempotency_key(),),
        errors={
            **BODY_ERRORS,
            409: IDEMPOTENCY_ERRORS,
            422: (*SHAPE_ERRORS, *URL_ERRORS, *_IMAGE_ERRORS, "IMAGE_TOO_COMPLEX")
            + ("INVALID_MULTIPART", "UNKNOWN_JOB_TYPE", "METADATA_TOO_LARGE")
            + ("INVALID_IDEMPOTENCY_KEY",),
            429: ("TOO_MANY_JOBS",),
            503: ("STORAGE_UNAVAILABLE",),
        },
    )
)
async def create_job(request: Request) -> Response:
    rt = runtime(request)
    limit = rt.settings.limits.max_request_bytes
    return await idempotent(request, rt, client_of(request), limit, _create_job)


async def _create_job(request: Request) -> Response:
    rt = runtime(request)
    client = client_of(request)
    body, upload = await read_job_request(
        request, rt.settings.limits.max_request_bytes, rt.settings.json_shape
    )
    submission = await read_submission(body, upload, rt.settings)
    async with job_slot(rt, client) as job_id:
        job = await launch_job(rt, client.id, submission, job_id=job_id)
    return JSONResponse(await _view(request, job), status_code=202)


@documented(Operation("A job", (Reply(200, "the job", {JSON: _JOB}),), errors=_MISSING))
async def get_job(request: Request) -> JSONResponse:
    job = await own_job(request, runtime(request).jobs)
    return JSONResponse(await _view(request, job))


@documented(
    Operation(
        "Cancel a job that has not finished",
        (Reply(200, "canceled", {JSON: _JOB}),),
        errors={**_MISSING, 422: ("JOB_ALREADY_FINISHED",)},
    )
)
async def cancel_job(request: Request) -> JSONResponse:
    rt = runtime(request)
    job = await own_job(request, rt.jobs)
    if job.status in TERMINAL:
        raise InvalidInput(
            f"the job has already {job.status}", code="JOB_ALREADY_FINISHED", field=None
        )
    canceled = await end_job(rt, job.id, "canceled")
    if canceled is None:  # it finished between our read and the transition
        raise InvalidInput("the job has already finished", code="JOB_ALREADY_FINISHED")
    return JSONResponse(await _view(request, canceled))


@documented(
    Operation(
        "Run a failed or canceled job again: its next attempt, under the same id",
        (Reply(202, "queued again", {JSON: _JOB}),),
        errors={**_MISSING, 422: ("JOB_NOT_RETRYABLE", "JOB_IN_BATCH"), 429: ("TOO_MANY_JOBS",)},
        description="The job keeps its id, input, reference and metadata; `attempt` counts up, "
        "the error that ended the last attempt moves to `earlier_errors`, and its events "
        "continue its `sequence` (so each has a new `webhook-id`).",
    )
)
async def retry_job(request: Request) -> JSONResponse:
    rt = runtime(request)
    job = await own_job(request, rt.jobs)
    if job.batch_id is not None:
        raise InvalidInput(
            f"the job is an item of batch {job.batch_id}: retry it there, "
            f"POST /v1/batches/{job.batch_id}/retry",
            code="JOB_IN_BATCH",
        )
    if job.status not in ("failed", "canceled"):
        raise InvalidInput(
            f"only a failed or canceled job runs again; this one is {job.status}",
            code="JOB_NOT_RETRYABLE",
        )
    await require_room(rt, client_of(request))
    queued = await requeue_job(rt, job, max_attempts=job.max_attempts)
    if queued is None:  # retried by another request meanwhile
        raise InvalidInput("the job is no longer failed or canceled", code="JOB_NOT_RETRYABLE")
    return JSONResponse(await _view(request, queued), status_code=202)


async def own_job(request: Request, jobs: JobStore) -> Job:
    """The job the path names, if the calling client owns it."""
    job_id = request.path_params["job_id"]
    job = await jobs.get(job_id)
    # Another client's job is as absent as a job that never was.
    if job is None or job.client_id != client_of(request).id:
        raise NotFound(f"no job {job_id}", code="JOB_NOT_FOUND", field="id")
    return job


async def _view(request: Request, job: Job) -> dict[str, Any]:
    rt = runtime(request)
    deliveries = await rt.deliveries.get_many(await rt.jobs.delivery_ids(job.id))
    view = job_fields(job, rt.storage, rt.settings.api.public_url)
    view["deliveries"] = [delivery_view(d) for d in deliveries if d is not None]
    return JobWithDeliveries.render(view)


routes = [
    ClientRoute("/v1/jobs", create_job, methods=["POST"]),
    ClientRoute("/v1/jobs/{job_id}", get_job, methods=["GET"]),
    ClientRoute("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    ClientRoute("/v1/jobs/{job_id}/retry", retry_job, methods=["POST"]),
]
