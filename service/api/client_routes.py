"""The routes API clients call: before each runs, who is calling (`ClientAuthentication`), then
the client's rate (`ClientRateLimit`). Route middleware runs only once the path and the method
have matched, so an unknown path stays 404 and a wrong method 405 without a key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.middleware import Middleware
from starlette.routing import Route

from service.api.authentication import ClientAuthentication
from service.api.rate_limits import ClientRateLimit

_FOR_CLIENTS = (Middleware(ClientAuthentication), Middleware(ClientRateLimit))


class ClientRoute(Route):
    """A `Route` that answers API clients only: its endpoint reads the caller with `client_of`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, methods: Sequence[str]) -> None:
        super().__init__(path, endpoint, methods=methods, middleware=_FOR_CLIENTS)
