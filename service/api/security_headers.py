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


# The console's pages: its own stylesheet, output thumbnails (from /files/ or S3), forms posting
# only to itself, no script at all.
CONSOLE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' https: http:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Pure ASGI middleware, so event streams pass through unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = _defaults_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_missing(MutableHeaders(scope=message), defaults)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _defaults_for(path: str) -> dict[str, str]:
    if path.startswith("/files/"):
        return FILE_HEADERS
    if path == "/console" or path.startswith("/console/"):
        return CONSOLE_HEADERS
    return API_HEADERS


def add_missing(headers: MutableHeaders, defaults: dict[str, str]) -> None:
    for name, value in defaults.items():
        headers.setdefault(name, value)
