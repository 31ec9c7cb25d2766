"""What every console page shares: the templates, the session check, CSRF on posts, errors shown
as pages, and the paging links."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from service.console.session import ConsoleSession, Sessions, csrf_matches, ended_key
from service.runtime import runtime
from webhooks import host_of

HERE = Path(__file__).parent
PAGE_SIZE = 50

templates = Jinja2Templates(directory=HERE / "templates")


def _when(moment: float | None) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _usd(amount: float | None) -> str:
    """Dollars to the precision costs are counted in (1e-8), without trailing zeros: $0.0001995."""
    if amount is None:
        return "—"
    return "$" + f"{amount:.8f}".rstrip("0").removesuffix(".")


def _seconds(span: float) -> str:
    return f"{span * 1000:.0f} ms" if span < 1 else f"{span:.1f} s"


def _pairs(metadata: Mapping[str, Any] | None, shown: int = 3) -> str:
    """A job's metadata in a table cell: its first few `key=value` pairs, and how many more."""
    pairs = [
        f"{key}={value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
        for key, value in (metadata or {}).items()
    ]
    more = f" … and {len(pairs) - shown} more" if len(pairs) > shown else ""
    return ", ".join(pairs[:shown]) + more


templates.env.filters |= {
    "when": _when,
    "seconds": _seconds,
    "usd": _usd,
    "host": host_of,
    "pairs": _pairs,
}


class Refused(Exception):
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
                    raise Refused(403, "This form has expired. Go back, reload and try again.")
            return await handler(request, session)
        except _SignIn:
            target = request.url.path if request.method == "GET" else "/console/overview"
            return RedirectResponse(f"/console/login?{urlencode({'next': target})}", 303)
        except Refused as refused:
            session_or_none = sessions_for(request).current(request)
            return render(
                request,
                session_or_none,
                "error.html",
                {"message": refused.message},
                status=refused.status,
            )

    return serve


async def _session(request: Request) -> ConsoleSession:
    sessions = sessions_for(request)
    session = sessions.current(request)
    if session is None:
        raise _SignIn
    rt = runtime(request)
    if await rt.redis.exists(ended_key(session.id)):
        raise _SignIn
    if session.client_id is None:
        password = rt.settings.console.password
        still_working = [password] if password else []
    else:
        still_working = await rt.clients.working_key_digests(session.client_id)
    if not sessions.bound_to(session, still_working):
        raise _SignIn
    return session


def sessions_for(request: Request) -> Sessions:
    settings = runtime(request).settings
    return Sessions(settings.api.secret_key, secure=settings.api.public_url.startswith("https://"))


def render(
    request: Request,
    session: ConsoleSession | None,
    name: str,
    context: Mapping[str, Any],
    status: int = 200,
) -> Response:
    return templates.TemplateResponse(
        request, name, {"session": session, **context}, status_code=status
    )


def visible(session: ConsoleSession, client_id: str) -> bool:
    return session.client_id is None or session.client_id == client_id


def cursor_of(params: Mapping[str, Any]) -> int | None:
    raw = params.get("cursor")
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else None


def older_link(request: Request, cursor: object | None) -> str | None:
    if cursor is None:
        return None
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    return f"{request.url.path}?{urlencode({**params, 'cursor': str(cursor)})}"
