"""The console's page of a batch: its counts, summary, cost and first failures, each failure
named by its item's reference and linked to its job; and its Resume form when it is paused."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.batches.items import failures, item_job_id
from service.batches.pausing import resume
from service.batches.views import batch_view
from service.console.session import ConsoleSession
from service.console.web import Refused, page, render, visible
from service.errors import Conflict
from service.jobs.batch_store import Batch
from service.runtime import Runtime, runtime


@page
async def batch_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    batch = await _visible_batch(rt, session, request.path_params["batch_id"])
    failed = await failures(rt, batch)
    view = batch_view(batch, failed, rt, await rt.batches.outcomes.stats(batch.id))
    # Items refused at intake never had a job to link to.
    jobs = await rt.jobs.get_many([item_job_id(batch.id, f["index"]) for f in failed])
    for failure, job in zip(view["failures"], jobs, strict=True):
        failure["job_id"] = None if job is None else job.id
    context = {
        "batch": view,
        "client_id": batch.client_id,
        "resumed": request.query_params.get("resumed") == "1",
    }
    return render(request, session, "batch.html", context)


@page
async def resume_batch(request: Request, session: ConsoleSession) -> Response:
    """The Resume button, as `POST /v1/batches/{id}/resume` does it."""
    rt = runtime(request)
    batch = await _visible_batch(rt, session, request.path_params["batch_id"])
    form = await request.form()
    try:
        await resume(rt, batch, _max_cost(str(form.get("max_cost") or "")))
    except Conflict as refused:
        raise Refused(409, refused.message) from None
    return RedirectResponse(f"/console/batches/{batch.id}?resumed=1", 303)


async def _visible_batch(rt: Runtime, session: ConsoleSession, batch_id: str) -> Batch:
    batch = await rt.batches.get(batch_id)
    if batch is None or not visible(session, batch.client_id):
        raise Refused(404, "No such batch (batches are kept for the job retention after they end).")
    return batch


def _max_cost(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise Refused(422, "The new budget must be a number of US dollars above 0.")
    return value
