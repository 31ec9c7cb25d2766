"""The console's pages and forms, mounted at /console. Reads go through `queries`; every form
posts with the session's CSRF token; every change is one the API can make too."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from service.auth import runtime
from service.console import queries
from service.console.chart import chart
from service.console.session import ConsoleSession, Sessions, csrf_matches, new_token
from service.job_index import JobFilter
from service.jobs import Job, JobStatus
from service.runtime import Runtime
from service.streams import read_events
from service.tasks import JOB_TYPES
from webhooks.dlq import DlqFilter
from webhooks.endpoints import Endpoint
from webhooks.store import STATUSES, Delivery, DeliveryStatus, host_of

HERE = Path(__file__).parent
PAGE_SIZE = 50
# Failed sign-ins per address before the form refuses for a while: a password is not guessed.
MAX_FAILED_LOGINS = 10
LOGIN_LOCKOUT_S = 300

templates = Jinja2Templates(directory=HERE / "templates")


def _when(moment: float | None) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(span: float) -> str:
    return f"{span * 1000:.0f} ms" if span < 1 else f"{span:.1f} s"


templates.env.filters |= {"when": _when, "seconds": _seconds, "host": host_of}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _SignIn(Exception):
    """No valid session: off to the login form."""


Page = Callable[[Request, ConsoleSession], Awaitable[Response]]


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A console page or form: signed in, CSRF-checked when it posts, errors as pages."""

    @wraps(handler)
    async def serve(request: Request) -> Response:
        try:
            session = await _session(request)
            if request.method == "POST":
                form = await request.form()
                if not csrf_matches(session, form.get("csrf")):
                    raise _Refused(403, "This form has expired. Go back, reload and try again.")
            return await handler(request, session)
        except _SignIn:
            target = request.url.path if request.method == "GET" else "/console/overview"
            return RedirectResponse(f"/console/login?{urlencode({'next': target})}", 303)
        except _Refused as refused:
            session_or_none = _sessions(request).current(request)
            return _render(
                request,
                session_or_none,
                "error.html",
                {"message": refused.message},
                status=refused.status,
            )

    return serve


async def _session(request: Request) -> ConsoleSession:
    session = _sessions(request).current(request)
    if session is None:
        raise _SignIn
    if session.client_id is not None:
        client = await runtime(request).clients.get(session.client_id)
        if client is None or client.revoked_at is not None:
            raise _SignIn
    return session


def _sessions(request: Request) -> Sessions:
    settings = runtime(request).settings
    return Sessions(settings.secret_key, secure=settings.public_url.startswith("https://"))


def _render(
    request: Request,
    session: ConsoleSession | None,
    name: str,
    context: Mapping[str, Any],
    status: int = 200,
) -> Response:
    return templates.TemplateResponse(
        request, name, {"session": session, **context}, status_code=status
    )


# Signing in and out.


async def home(request: Request) -> Response:
    return RedirectResponse("/console/overview", 303)


async def login_form(request: Request) -> Response:
    return _login_page(request, None, 200)


def _login_page(request: Request, error: str | None, status: int) -> Response:
    token = new_token()
    context = {"error": error, "login_token": token, "next": _next(request.query_params)}
    response = _render(request, None, "login.html", context, status)
    _sessions(request).remember_login_token(response, token)
    return response


async def login(request: Request) -> Response:
    rt = runtime(request)
    form = await request.form()
    sessions = _sessions(request)
    if not sessions.login_token_matches(request, str(form.get("login_token", ""))):
        return _login_page(request, "The sign-in form expired. Please try again.", 403)
    failures_key = f"pixhook:console:failed-logins:{request.client.host if request.client else ''}"
    if int(await rt.redis.get(failures_key) or 0) >= MAX_FAILED_LOGINS:
        return _login_page(request, "Too many failed sign-ins. Wait a few minutes.", 429)
    client_id, known = await _who(rt, str(form.get("secret", "")))
    if not known:
        async with rt.redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, LOGIN_LOCKOUT_S)
            await pipe.execute()
        return _login_page(request, "That is neither the console password nor an API key.", 401)
    await rt.redis.delete(failures_key)
    response = RedirectResponse(_next(form) or "/console/overview", 303)
    sessions.start(response, client_id)
    return response


async def _who(rt: Runtime, secret: str) -> tuple[str | None, bool]:
    """(client id, or None for the operator; whether the secret is known at all)."""
    password = rt.settings.console_password
    if password and _same(secret, password):
        return None, True
    client = await rt.clients.authenticate(secret) if secret else None
    return (client.id, True) if client is not None else (None, False)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _next(source: Mapping[str, Any] | FormData) -> str | None:
    # Only a console path: never an open redirect to another site.
    target = source.get("next")
    if isinstance(target, str) and target.startswith("/console/") and "//" not in target:
        return target
    return None


@page
async def logout(request: Request, session: ConsoleSession) -> Response:
    response = RedirectResponse("/console/login", 303)
    _sessions(request).end(response)
    return response


# Pages.


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
    return _render(request, session, "overview.html", {"o": figures, "chart": drawn})


@page
async def jobs_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    params = request.query_params
    wanted_id = params.get("id", "").strip()
    if wanted_id:
        job = await rt.jobs.get(wanted_id)
        if job is not None and _visible(session, job.client_id):
            return RedirectResponse(f"/console/jobs/{job.id}", 303)
    status = _choice(params.get("status"), get_args(JobStatus))
    job_type = _choice(params.get("type"), sorted(JOB_TYPES))
    client_id = session.client_id or (params.get("client") or None)
    where = JobFilter(status, job_type, client_id)
    found = await rt.jobs.page(where, limit=PAGE_SIZE, cursor=_cursor(params))
    context = {
        "jobs": found.jobs,
        "next": _link(request, found.next_cursor),
        "filters": {"status": status, "type": job_type, "client": client_id},
        "statuses": get_args(JobStatus),
        "types": sorted(JOB_TYPES),
        "clients": await queries.clients_in_view(rt, session.client_id),
        "not_found": wanted_id or None,
    }
    return _render(request, session, "jobs.html", context)


@page
async def job_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    job = await rt.jobs.get(request.path_params["job_id"])
    if job is None or not _visible(session, job.client_id):
        raise _Refused(404, "No such job (records are kept for the job retention period).")
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
    return _render(request, session, "job.html", context)


@page
async def deliveries_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    params = request.query_params
    status: DeliveryStatus = _choice(params.get("status"), STATUSES) or "dead"
    host = (params.get("host") or "").strip().lower() or None
    owners = await _owners(rt, session)
    found = await queries.deliveries(
        rt, owners, status, host=host, limit=PAGE_SIZE, cursor=_cursor(params)
    )
    context = {
        "deliveries": found.deliveries,
        "next": _link(request, found.next_cursor),
        "filters": {"status": status, "host": host},
        "statuses": STATUSES,
    }
    return _render(request, session, "deliveries.html", context)


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
    return _render(request, session, "delivery.html", context)


@page
async def retry_delivery(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    delivery = await _own_delivery(rt, session, request.path_params["delivery_id"])
    await rt.deliveries.requeue(delivery, time.time(), only_dead=False)
    return RedirectResponse(f"/console/deliveries/{delivery.id}?retried=1", 303)


@page
async def dlq_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    where = _dlq_filter(request.query_params)
    found = await rt.dead_letters.page(
        session.client_id, where, limit=PAGE_SIZE, cursor=_cursor(request.query_params)
    )
    context = {
        "deliveries": found.deliveries,
        "next": _link(request, found.next_cursor),
        "filters": _dlq_fields(request.query_params),
        "done": _done(request.query_params),
    }
    return _render(request, session, "dlq.html", context)


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
        return _render(request, session, "purge.html", context)
    else:
        raise _Refused(400, "Choose what to do with the dead deliveries.")
    return RedirectResponse(f"{back}&done=replayed&count={count}", 303)


@page
async def dlq_purge(request: Request, session: ConsoleSession) -> Response:
    """The confirmed purge: exactly the deliveries the confirmation page listed."""
    rt = runtime(request)
    form = await request.form()
    if form.get("confirm") != "yes":
        raise _Refused(400, "Nothing was purged: the purge was not confirmed.")
    ids = [str(i) for i in form.getlist("ids")]
    count = sum([await rt.dead_letters.purge(session.client_id, i) for i in ids])
    back = "/console/dlq?" + urlencode(_dlq_fields(form))
    return RedirectResponse(f"{back}&done=purged&count={count}", 303)


@page
async def endpoints_page(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    found = await queries.endpoints(rt, await _owners(rt, session))
    return _render(request, session, "endpoints.html", {"endpoints": found})


@page
async def enable_endpoint(request: Request, session: ConsoleSession) -> Response:
    rt = runtime(request)
    owner, endpoint_id = request.path_params["client_id"], request.path_params["endpoint_id"]
    if not _visible(session, owner):
        raise _Refused(404, "No such endpoint.")

    def enabled(endpoint: Endpoint) -> Endpoint:
        return replace(endpoint, enabled=True, disabled_reason=None, disabled_at=None)

    if await rt.endpoints.update(owner, endpoint_id, enabled) is None:
        raise _Refused(404, "No such endpoint.")
    await rt.endpoints.forget_failures(endpoint_id)
    return RedirectResponse("/console/endpoints", 303)


# Helpers.


def _visible(session: ConsoleSession, client_id: str) -> bool:
    return session.client_id is None or session.client_id == client_id


async def _owners(rt: Runtime, session: ConsoleSession) -> list[str]:
    return [c.id for c in await queries.clients_in_view(rt, session.client_id)]


async def _own_delivery(rt: Runtime, session: ConsoleSession, delivery_id: str) -> Delivery:
    delivery = await rt.deliveries.get(delivery_id)
    if delivery is None or not _visible(session, delivery.owner):
        raise _Refused(404, "No such delivery (succeeded ones are kept for the job retention).")
    return delivery


async def _dead_matching(rt: Runtime, session: ConsoleSession, where: DlqFilter) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        found = await rt.dead_letters.page(session.client_id, where, limit=500, cursor=cursor)
        ids += [d.id for d in found.deliveries]
        if found.next_cursor is None:
            return ids
        cursor = found.next_cursor


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


def _cursor(params: Mapping[str, Any]) -> int | None:
    raw = params.get("cursor")
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else None


def _link(request: Request, cursor: int | None) -> str | None:
    if cursor is None:
        return None
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    return f"{request.url.path}?{urlencode({**params, 'cursor': cursor})}"


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
        raise _Refused(400, f"{value!r} is not a date and time.") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _done(params: Mapping[str, Any]) -> str | None:
    # Fixed wording chosen by a key: a crafted link cannot put words on the page.
    count = params.get("count", "")
    if not (isinstance(count, str) and count.isascii() and count.isdigit()):
        return None
    verbs = {"replayed": "Requeued", "purged": "Purged"}
    verb = verbs.get(params.get("done", ""))
    return None if verb is None else f"{verb} {int(count)} dead deliveries."


routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/overview", overview_page, methods=["GET"]),
    Route("/jobs", jobs_page, methods=["GET"]),
    Route("/jobs/{job_id}", job_page, methods=["GET"]),
    Route("/deliveries", deliveries_page, methods=["GET"]),
    Route("/deliveries/{delivery_id}", delivery_page, methods=["GET"]),
    Route("/deliveries/{delivery_id}/retry", retry_delivery, methods=["POST"]),
    Route("/dlq", dlq_page, methods=["GET"]),
    Route("/dlq", dlq_act, methods=["POST"]),
    Route("/dlq/purge", dlq_purge, methods=["POST"]),
    Route("/endpoints", endpoints_page, methods=["GET"]),
    Route("/endpoints/{client_id}/{endpoint_id}/enable", enable_endpoint, methods=["POST"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="console-static"),
]
console = Mount("/console", routes=routes)
