"""The console's dead-letter queue: filter, replay the selected or all matching, purge after a
confirmation page."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.console.session import ConsoleSession
from service.console.web import PAGE_SIZE, Refused, cursor_of, older_link, page, render
from service.runtime import Runtime, runtime
from webhooks import DlqFilter


@page
async def dlq_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    where = _dlq_filter(request.query_params)
    found = await rt.dead_letters.page(
        session.client_id, where, limit=PAGE_SIZE, cursor=cursor_of(request.query_params)
    )
    context = {
        "deliveries": found.deliveries,
        "next": older_link(request, found.next_cursor),
        "filters": _dlq_fields(request.query_params),
        "done": _done(request.query_params),
    }
    return render(request, session, "dlq.html", context)


@page
async def dlq_act(request: Request, session: ConsoleSession) -> Response:
    """Replay now, or ask before purging: what the DLQ page's buttons do."""
    rt = runtime(request)
    form = await request.form()
    action = form.get("action")
    ids = [str(i) for i in form.getlist("ids")]
    where = _dlq_filter(form)
    back = "/console/dlq?" + urlencode(_dlq_fields(form))
    if action == "replay-selected":
        count = sum([await rt.dead_letters.replay_one(session.client_id, i) for i in ids])
    elif action == "replay-all":
        count = await rt.dead_letters.replay(session.client_id, where)
    elif action in ("purge-selected", "purge-all"):
        everything = action == "purge-all"
        matching = await _dead_matching(rt, session, where) if everything else ids
        context = {"ids": matching, "everything": everything, "fields": _dlq_fields(form)}
        return render(request, session, "purge.html", context)
    else:
        raise Refused(400, "Choose what to do with the dead deliveries.")
    return RedirectResponse(f"{back}&done=replayed&count={count}", 303)


@page
async def dlq_purge(request: Request, session: ConsoleSession) -> Response:
    """The confirmed purge: exactly the deliveries the confirmation page listed."""
    rt = runtime(request)
    form = await request.form()
    if form.get("confirm") != "yes":
        raise Refused(400, "Nothing was purged: the purge was not confirmed.")
    ids = [str(i) for i in form.getlist("ids")]
    count = sum([await rt.dead_letters.purge(session.client_id, i) for i in ids])
    back = "/console/dlq?" + urlencode(_dlq_fields(form))
    return RedirectResponse(f"{back}&done=purged&count={count}", 303)


async def _dead_matching(rt: Runtime, session: ConsoleSession, where: DlqFilter) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        found = await rt.dead_letters.page(session.client_id, where, limit=500, cursor=cursor)
        ids += [d.id for d in found.deliveries]
        if found.next_cursor is None:
            return ids
        cursor = found.next_cursor


def _dlq_fields(source: Mapping[str, Any] | FormData) -> dict[str, str]:
    return {
        name: str(source.get(name, "")).strip()
        for name in ("host", "since", "until")
        if source.get(name)
    }


def _dlq_filter(source: Mapping[str, Any] | FormData) -> DlqFilter:
    fields = _dlq_fields(source)
    return DlqFilter(
        fields.get("host", "").lower() or None,
        _moment(fields.get("since")),
        _moment(fields.get("until")),
    )


def _moment(value: str | None) -> float | None:
    """A `datetime-local` input's value, read as UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Refused(400, f"{value!r} is not a date and time.") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _done(params: Mapping[str, Any]) -> str | None:
    # Fixed wording chosen by a key: a crafted link cannot put words on the page.
    count = params.get("count", "")
    if not (isinstance(count, str) and count.isascii() and count.isdigit()):
        return None
    verbs = {"replayed": "Requeued", "purged": "Purged"}
    verb = verbs.get(params.get("done", ""))
    return None if verb is None else f"{verb} {int(count)} dead deliveries."
