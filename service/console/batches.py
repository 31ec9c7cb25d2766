"""The console's page of a batch: its counts, summary and first failures, each failure named by
its item's reference and linked to its job."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.batches.items import failures, item_job_id
from service.batches.views import batch_view
from service.console.session import ConsoleSession
from service.console.web import Refused, page, render, visible
from service.runtime import runtime


@page
async def batch_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    batch = await rt.batches.get(request.path_params["batch_id"])
    if batch is None or not visible(session, batch.client_id):
        raise Refused(404, "No such batch (batches are kept for the job retention after they end).")
    failed = await failures(rt, batch)
    view = batch_view(batch, failed, rt, await rt.batches.outcomes.stats(batch.id))
    # Items refused at intake never had a job to link to.
    jobs = await rt.jobs.get_many([item_job_id(batch.id, f["index"]) for f in failed])
    for failure, job in zip(view["failures"], jobs, strict=True):
        failure["job_id"] = None if job is None else job.id
    return render(request, session, "batch.html", {"batch": view, "client_id": batch.client_id})
