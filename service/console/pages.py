"""The console's pages of jobs, deliveries and endpoints, and their forms (send a delivery again,
enable an endpoint)."""

from __future__ import annotations

import json
import time
from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.console import queries
from service.console.chart import chart
from service.console.session import ConsoleSession
from service.console.web import (
    PAGE_SIZE,
    Refused,
    cursor_of,
    older_link,
    page,
    render,
    visible,
)
from service.jobs.index import IndexCursor, JobFilter
from service.jobs.model import Job, JobStatus
from service.jobs.streams import read_events
from service.runtime import Runtime, runtime
from service.tasks import JOB_TYPES
from webhooks import STATUSES, Delivery, DeliveryStatus


@page
async def overview_page(request: Request, session: ConsoleSession) -> Response:
    figures = await queries.overview(runtime(request), session.client_id)
    minutes = figures.minutes
    drawn = chart(
        [
            ("jobs ended", "jobs", [m.jobs_ended for m in minutes]),
            ("deliveries ok", "ok", [m.attempts_ok for m in minutes]),
            ("deliveries failed", "failed", [m.attempts_failed for m in minutes]),
        ]
    )
    return render(request, session, "overview.html", {"o": figures, "chart": drawn})


@page
async def jobs_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    params = request.query_params
    wanted_id = params.get("id", "").strip()
    if wanted_id:
        job = await rt.jobs.get(wanted_id)
        if job is not None and visible(session, job.client_id):
            return RedirectResponse(f"/console/jobs/{job.id}", 303)
    status = _choice(params.get("status"), get_args(JobStatus))
    job_type = _choice(params.get("type"), sorted(JOB_TYPES))
    client_id = session.client_id or (params.get("client") or None)
    # With a client, the reference index finds it; across all clients, a bounded walk does.
    reference = params.get("reference", "").strip() or None
    statuses = () if status is None else (status,)
    where = JobFilter(statuses, job_type, client_id, reference)
    cursor = IndexCursor.parse(params.get("cursor", ""))
    found = await rt.jobs.page(where, limit=PAGE_SIZE, cursor=cursor)
    context = {
        "jobs": found.jobs,
        "next": older_link(request, found.next_cursor),
        "filters": {
            "status": status,
            "type": job_type,
            "client": client_id,
            "reference": reference,
        },
        "statuses": get_args(JobStatus),
        "types": sorted(JOB_TYPES),
        "clients": await queries.clients_in_view(rt, session.client_id),
        "not_found": wanted_id or None,
    }
    return render(request, session, "jobs.html", context)


@page
async def job_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    job = await rt.jobs.get(request.path_params["job_id"])
    if job is None or not visible(session, job.client_id):
        raise Refused(404, "No such job (records are kept for the job retention period).")
    deliveries = await rt.deliveries.get_many(await rt.jobs.delivery_ids(job.id))
    images = [
        {**image, "url": rt.storage.url(image["key"], image["media_type"])}
        for image in (job.output or {}).get("images", [])
    ]
    context = {
        "job": job,
        "input": json.dumps(job.input, indent=2, ensure_ascii=False),
        "images": images,
        "output": _output_summary(job),
        "timeline": await _timeline(rt, job),
        "deliveries": [d for d in deliveries if d is not None],
    }
    return render(request, session, "job.html", context)


@page
async def deliveries_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    params = request.query_params
    status: DeliveryStatus = _choice(params.get("status"), STATUSES) or "dead"
    host = (params.get("host") or "").strip().lower() or None
    owners = await _owners(rt, session)
    found = await queries.deliveries(
        rt, owners, status, host=host, limit=PAGE_SIZE, cursor=cursor_of(params)
    )
    context = {
        "deliveries": found.deliveries,
        "next": older_link(request, found.next_cursor),
        "filters": {"status": status, "host": host},
        "statuses": STATUSES,
    }
    return render(request, session, "deliveries.html", context)


@page
async def delivery_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    delivery = await _own_delivery(rt, session, request.path_params["delivery_id"])
    attempts = await rt.deliveries.attempts(delivery.id)
    context = {
        "delivery": delivery,
        "attempts": list(reversed(attempts)),
        "body": _pretty(delivery.payload),
        "retried": request.query_params.get("retried") == "1",
    }
    return render(request, session, "delivery.html", context)


@page
async def retry_delivery(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    delivery = await _own_delivery(rt, session, request.path_params["delivery_id"])
    await rt.deliveries.requeue(delivery, time.time(), only_dead=False)
    return RedirectResponse(f"/console/deliveries/{delivery.id}?retried=1", 303)


@page
async def endpoints_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    found = await queries.endpoints(rt, await _owners(rt, session))
    return render(request, session, "endpoints.html", {"endpoints": found})


@page
async def enable_endpoint(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    owner, endpoint_id = request.path_params["client_id"], request.path_params["endpoint_id"]
    if not visible(session, owner):
        raise Refused(404, "No such endpoint.")
    if await rt.endpoints.enable(owner, endpoint_id) is None:
        raise Refused(404, "No such endpoint.")
    return RedirectResponse("/console/endpoints", 303)


async def _owners(rt: Runtime, session: ConsoleSession) -> list[str]:
    return [c.id for c in await queries.clients_in_view(rt, session.client_id)]


async def _own_delivery(rt: Runtime, session: ConsoleSession, delivery_id: str) -> Delivery:
    delivery = await rt.deliveries.get(delivery_id)
    if delivery is None or not visible(session, delivery.owner):
        raise Refused(404, "No such delivery (succeeded ones are kept for the job retention).")
    return delivery


async def _timeline(rt: Runtime, job: Job) -> list[dict[str, Any]]:
    """The job's events while its live stream is kept; its recorded times after that."""
    events = await read_events(rt.redis, job.id, "0", block_s=None, count=200)
    if events:
        return [{"at": _stream_time(e.id), "type": e.type} for e in events]
    moments = [
        (job.created_at, "job.queued"),
        (job.started_at, "job.started"),
        (job.finished_at, f"job.{job.status}"),
    ]
    return [{"at": at, "type": kind} for at, kind in moments if at is not None]


def _stream_time(entry_id: str) -> float:
    return int(entry_id.split("-")[0]) / 1000


def _output_summary(job: Job) -> str | None:
    if job.output is None:
        return None
    rest = {k: v for k, v in job.output.items() if k != "images"}
    return json.dumps(rest, indent=2, ensure_ascii=False) if rest else None


def _pretty(payload: bytes) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload.decode("utf-8", errors="replace")


def _choice(value: str | None, allowed: Any) -> Any:
    return value if value in allowed else None
