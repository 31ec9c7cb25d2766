"""Security headers on every response, set once here instead of in each route.

A header a route already set wins: event streams keep `Cache-Control: no-cache`, and `/files/`
keeps the caching its signed, expiring links allow.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# JSON and event streams: nothing in them may run, be framed, or be kept by a cache.
API_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cache-control": "no-store",
}

# Stored outputs: a sandboxed, script-free document even if a browser is made to render one.
FILE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
}


class SecurityHeaders:
    """Pure ASGI middleware, so event streams pass through unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = FILE_HEADERS if scope["path"].startswith("/files/") else API_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_missing(MutableHeaders(scope=message), defaults)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_missing(headers: MutableHeaders, defaults: dict[str, str]) -> None:
    for name, value in defaults.items():
        headers.setdefault(name, value)
