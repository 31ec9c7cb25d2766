"""The console's page of provider usage: each client's tokens and cost by UTC day (the
operator's for every client, a client's for itself), as `GET /v1/usage` reports them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from service.api.routes.usage import usage_report
from service.console import queries
from service.console.session import ConsoleSession
from service.console.web import page, render
from service.runtime import runtime

DAYS_SHOWN = 30


@page
async def usage_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    last = datetime.now(UTC).date()
    first = last - timedelta(DAYS_SHOWN - 1)
    reports = [
        usage_report(client.id, await rt.jobs.usage.days(client.id, first, last))
        for client in await queries.clients_in_view(rt, session.client_id)
    ]
    context = {"reports": reports, "first": first.isoformat(), "last": last.isoformat()}
    return render(request, session, "usage.html", context)
