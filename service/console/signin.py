"""Signing in to the console and out of it."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.clients.store import key_digest
from service.console.session import SESSION_MAX_AGE_S, ConsoleSession, ended_key, new_token
from service.console.web import page, render, sessions_for
from service.keys import KEYS
from service.runtime import Runtime, runtime

# Failed sign-ins per address before the form refuses for a while: a password is not guessed.
MAX_FAILED_LOGINS = 10
LOGIN_LOCKOUT_S = 300


async def home(request: Request) -> Response:
    return RedirectResponse("/console/overview", 303)


async def login_form(request: Request) -> Response:
    return _login_page(request, None, 200)


def _login_page(request: Request, error: str | None, status: int) -> Response:
    token = new_token()
    context = {"error": error, "login_token": token, "next": _next(request.query_params)}
    response = render(request, None, "login.html", context, status)
    sessions_for(request).remember_login_token(response, token)
    return response


async def login(request: Request) -> Response:
    rt = runtime(request)
    form = await request.form()
    sessions = sessions_for(request)
    if not sessions.login_token_matches(request, str(form.get("login_token", ""))):
        return _login_page(request, "The sign-in form expired. Please try again.", 403)
    failures_key = KEYS.console_failed_logins(request.client.host if request.client else "")
    if int(await rt.redis.get(failures_key) or 0) >= MAX_FAILED_LOGINS:
        return _login_page(request, "Too many failed sign-ins. Wait a few minutes.", 429)
    who = await _who(rt, str(form.get("secret", "")))
    if who is None:
        async with rt.redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, LOGIN_LOCKOUT_S)
            await pipe.execute()
        return _login_page(request, "That is neither the console password nor an API key.", 401)
    await rt.redis.delete(failures_key)
    response = RedirectResponse(_next(form) or "/console/overview", 303)
    sessions.start(response, *who)
    return response


async def _who(rt: Runtime, secret: str) -> tuple[str | None, str] | None:
    """Who `secret` signs in: (client id, or None for the operator; what the session is bound
    to). None: neither the console password nor a working API key."""
    password = rt.settings.console.password
    if password and _same(secret, password):
        return None, password
    client = await rt.clients.authenticate(secret) if secret else None
    return (client.id, key_digest(secret)) if client is not None else None


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
    await runtime(request).redis.set(ended_key(session.id), 1, ex=SESSION_MAX_AGE_S)
    response = RedirectResponse("/console/login", 303)
    sessions_for(request).end(response)
    return response
