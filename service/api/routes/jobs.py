"""`/v1/jobs`: submit, read and cancel jobs."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.admission import job_slot, require_room
from service.api.authentication import client_of
from service.api.bodies import read_job_request
from service.api.client_routes import ClientRoute
from service.api.idempotency import idempotent
from service.api.listing import PAGING, moment, moment_param, paging, statuses, statuses_param
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
    Param,
    Reply,
    documented,
    idempotency_key,
    links,
)
from service.clients.brand_lists import BrandLists
from service.errors import InvalidInput, NotFound
from service.jobs.index import JobFilter
from service.jobs.model import TERMINAL, Job, JobStatus
from service.jobs.store import JobStore
from service.jobs.view_models import JobPage, JobWithDeliveries
from service.jobs.views import delivery_view, job_fields
from service.launch import launch_job
from service.lifecycle import end_job, requeue_job
from service.runtime import runtime
from service.submission import MAX_REFERENCE_LENGTH, JobRequest, JobUpload, read_submission
from service.tasks import JOB_TYPES

_JOB = JobWithDeliveries
_MISSING = {404: ("JOB_NOT_FOUND",)}
_IMAGE_ERRORS = ("MISSING_IMAGE", "IMAGE_TOO_LARGE", "INVALID_IMAGE", "TOO_MANY_FRAMES")
# What a job's `reference` may be (service/submission.py), to look one up.
_REFERENCE_TEXT = re.compile(f"[^\\x00-\\x1f\\x7f]{{1,{MAX_REFERENCE_LENGTH}}}")
_REFERENCE = {"type": "string", "pattern": f"^{_REFERENCE_TEXT.pattern}$"}
_BATCH_ID = re.compile("bat_[0-9a-z]{1,40}")


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
            + ("INVALID_IDEMPOTENCY_KEY",)
            + ("INVALID_OUTPUT_NAME", "INVALID_CONVERSATION")
            + ("INVALID_ATTRIBUTES_SCHEMA", "UNKNOWN_LANGUAGE", "TOO_MANY_BRANDS")
            + ("BRAND_LIST_NOT_FOUND",),
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
    await BrandLists(rt.redis).require(client.id, submission.params.get("brand_list"))
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
        "The client's jobs, newest first, filtered",
        (Reply(200, "a page", {JSON: JobPage}),),
        params=(
            *PAGING,
            statuses_param(get_args(JobStatus)),
            Param("type", "query", {"enum": sorted(JOB_TYPES)}),
            Param("reference", "query", _REFERENCE, "exactly this reference"),
            Param("batch", "query", {"type": "string", "pattern": f"^{_BATCH_ID.pattern}$"}),
            moment_param("created_after", "created at or after"),
            moment_param("created_before", "created before"),
        ),
        errors={404: ("BATCH_NOT_FOUND",), 422: ("INVALID_INPUT",)},
    )
)
async def list_jobs(request: Request) -> JSONResponse:
    rt = runtime(request)
    params = request.query_params
    limit, cursor = paging(params)
    where = JobFilter(
        statuses=statuses(params, get_args(JobStatus)),
        type=_job_type(params.get("type")),
        client_id=client_of(request).id,
        reference=_reference(params.get("reference")),
        batch_id=_batch_id(params.get("batch")),
        created_after=moment(params, "created_after"),
        created_before=moment(params, "created_before"),
    )
    if where.batch_id is not None:
        batch = await rt.batches.get(where.batch_id)
        if batch is None or batch.client_id != where.client_id:
            raise NotFound(f"no batch {where.batch_id}", code="BATCH_NOT_FOUND", field="batch")
        # Its items are created after it: the walk through the client's jobs stops there.
        after = max(where.created_after or batch.created_at, batch.created_at)
        where = replace(where, created_after=after)
    found = await rt.jobs.page(where, limit=limit, cursor=cursor)
    public_url = rt.settings.api.public_url
    views = [job_fields(job, rt.storage, public_url) for job in found.jobs]
    next_cursor = None if found.next_cursor is None else str(found.next_cursor)
    return JSONResponse(JobPage.render({"data": views, "next_cursor": next_cursor}))


def _job_type(raw: str | None) -> str | None:
    if raw is not None and raw not in JOB_TYPES:
        raise InvalidInput(f"type must be one of: {', '.join(sorted(JOB_TYPES))}", field="type")
    return raw


def _batch_id(raw: str | None) -> str | None:
    # Checked before it names a key: `bat_…:items` would name another key of the batch.
    if raw is not None and not _BATCH_ID.fullmatch(raw):
        raise InvalidInput("batch must be a batch's id, bat_…", field="batch")
    return raw


def _reference(raw: str | None) -> str | None:
    if raw is not None and not _REFERENCE_TEXT.fullmatch(raw):
        raise InvalidInput(
            f"reference must be 1 to {MAX_REFERENCE_LENGTH} characters without control characters",
            field="reference",
        )
    return raw


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
    ClientRoute("/v1/jobs", list_jobs, methods=["GET"]),
    ClientRoute("/v1/jobs/{job_id}", get_job, methods=["GET"]),
    ClientRoute("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    ClientRoute("/v1/jobs/{job_id}/retry", retry_job, methods=["POST"]),
]
