"""`/v1/jobs`: submit, read and cancel jobs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.admission import job_slot
from service.auth import authenticate, runtime
from service.batches.engine import announce_end
from service.bodies import read_job_request
from service.errors import InvalidInput, NotFound
from service.idempotency import idempotent
from service.jobs import TERMINAL, Job
from service.launch import launch_job
from service.submission import read_submission
from service.views import delivery_view, job_view


async def create_job(request: Request) -> Response:
    rt = runtime(request)
    client = await authenticate(request)
    return await idempotent(request, rt, client, rt.settings.max_request_bytes, _create_job)


async def _create_job(request: Request) -> Response:
    rt = runtime(request)
    client = await authenticate(request)
    body, upload = await read_job_request(
        request, rt.settings.max_request_bytes, rt.settings.json_shape
    )
    submission = await read_submission(body, upload, rt.settings)
    async with job_slot(rt, client) as job_id:
        job = await launch_job(rt, client.id, submission, job_id=job_id)
    return JSONResponse(await _view(request, job), status_code=202)


async def get_job(request: Request) -> JSONResponse:
    job = await own_job(request)
    return JSONResponse(await _view(request, job))


async def cancel_job(request: Request) -> JSONResponse:
    job = await own_job(request)
    rt = runtime(request)
    if job.status in TERMINAL:
        raise InvalidInput(
            f"the job has already {job.status}", code="JOB_ALREADY_FINISHED", field=None
        )
    canceled = await rt.jobs.transition(job.id, "canceled")
    if canceled is None:  # it finished between our read and the transition
        raise InvalidInput("the job has already finished", code="JOB_ALREADY_FINISHED")
    await announce_end(rt, canceled)
    return JSONResponse(await _view(request, canceled))


async def own_job(request: Request) -> Job:
    client = await authenticate(request)
    job_id = request.path_params["job_id"]
    job = await runtime(request).jobs.get(job_id)
    # Another client's job is as absent as a job that never was.
    if job is None or job.client_id != client.id:
        raise NotFound(f"no job {job_id}", code="JOB_NOT_FOUND", field="id")
    return job


async def _view(request: Request, job: Job) -> dict[str, object]:
    rt = runtime(request)
    view = job_view(job, rt.storage, rt.settings.public_url)
    deliveries = await rt.deliveries.get_many(await rt.jobs.delivery_ids(job.id))
    view["deliveries"] = [delivery_view(d) for d in deliveries if d is not None]
    return view


routes = [
    Route("/v1/jobs", create_job, methods=["POST"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
]
