"""Who is calling: the bearer API key, and the runtime a request works with."""

from __future__ import annotations

from starlette.requests import Request

from service import logs
from service.admission import admit_request
from service.clients import Client
from service.errors import Unauthorized
from service.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def authenticate(request: Request) -> Client:
    """The calling client, its request charged to its rate limit once however often asked."""
    known: Client | None = getattr(request.state, "client", None)
    if known is not None:
        return known
    scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    client = await runtime(request).clients.authenticate(api_key.strip())
    if client is None:
        raise Unauthorized("the API key is not valid")
    request.state.client = client
    logs.add(client_id=client.id)  # every later line of this request names its client
    await admit_request(request, runtime(request), client)
    return client
