"""Who is calling: the client whose API key the request bears, resolved once per request.

As starlette's `AuthenticationMiddleware` does for a whole app, but mounted on each route that
needs a client (`service.api.client_routes.ClientRoute`): the public routes (health, `/info`,
`/metrics`, `/files/...`, `/openapi.json`, the console with its own session) never read the
header, and a path that names no route answers 404, or a method its route lacks 405, before any
key is asked for. The client goes on `request.state.client` (`client_of` reads it); every line
logged for the rest of the request names it.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service import logs
from service.clients.store import Client, ClientStore
from service.errors import Unauthorized


class ClientAuthentication:
    """`401 UNAUTHORIZED` unless the request bears a valid API key; else the route runs with its
    client on `request.state.client`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        clients: ClientStore = connection.app.state.runtime.clients
        client = await _bearer(connection, clients)
        connection.state.client = client
        logs.add(client_id=client.id)  # the request's own line (service.app.RequestIds) too
        await self.app(scope, receive, send)


def client_of(request: Request) -> Client:
    """The calling client, on a route behind `ClientAuthentication`."""
    client: Client = request.state.client
    return client


async def _bearer(connection: HTTPConnection, clients: ClientStore) -> Client:
    scheme, _, api_key = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    client = await clients.authenticate(api_key.strip())
    if client is None:
        raise Unauthorized("the API key is not valid")
    return client
