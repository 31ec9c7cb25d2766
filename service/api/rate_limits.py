"""Each client's request rate, as middleware: `ClientRateLimit` charges the request on the routes
a client calls, after `ClientAuthentication` has said whose it is; `RateLimitHeaders`, on the
whole app, adds the charge's `RateLimit-*` headers to whatever answers it (a `429`, an error
raised by the route, or its response). The rate itself is reckoned in service/api/admission.py.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.admission import RateDecision, admit_request
from service.runtime import Runtime


class ClientRateLimit:
    """`429 RATE_LIMITED` once the client's rate is spent; the decision goes on
    `request.state.rate_limit` either way."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        runtime: Runtime = connection.app.state.runtime
        decision = await admit_request(runtime.redis, runtime.settings, connection.state.client)
        connection.state.rate_limit = decision
        if not decision.allowed:
            raise decision.refusal()
        await self.app(scope, receive, send)


class RateLimitHeaders:
    """Adds the `RateLimit-*` headers of the request's charge (if it had one) to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            decision: Any = scope.get("state", {}).get("rate_limit")
            if message["type"] == "http.response.start" and isinstance(decision, RateDecision):
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers().items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
