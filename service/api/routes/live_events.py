"""Live events as Server-Sent Events: `GET /v1/jobs/{id}/events`, and `sse_response` for any
owner of an event stream (service/jobs/streams.py), such as a batch.

Every open stream reads Redis on a connection of its own, opened with the response and closed
when the stream ends or the client leaves: XREAD BLOCK holds its connection for the whole wait,
and callers who only watch must never tie up the pool that requests and enqueues share.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import anyio
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.api.client_routes import ClientRoute
from service.api.operations import Operation, Param, Reply, documented
from service.api.routes.jobs import own_job  # the very check of GET /v1/jobs/{id}
from service.errors import InvalidInput
from service.jobs.model import TERMINAL
from service.jobs.streams import StreamEvent, last_event_type, read_events
from service.publishing import stream_status
from service.runtime import runtime

log = logging.getLogger("pixhook.api")

JOB_TERMINAL_EVENTS = frozenset({"job.completed", "job.failed", "job.canceled"})
BATCH_TERMINAL_EVENTS = frozenset({"batch.completed", "batch.canceled", "batch.failed"})
# How long a client waits before reconnecting when the connection drops (SSE `retry:`, in ms).
RETRY_MS = 3000
# A stream entry id: milliseconds, then a sequence number; each fits in 64 bits.
_ENTRY_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")

# True once the owner has ended and its terminal event is in its stream.
HasEnded = Callable[[], Awaitable[bool]]


EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,19}(-[0-9]{1,19})?$"}
# Where a reconnecting client resumes.
RESUME = Param("last_event_id", "query", EVENT_ID, "or the `Last-Event-ID` header")
# An event's `data` line: the JSON of the job or batch (or of a model's output delta).
_EventData = Annotated[
    str, WithJsonSchema({"type": "string", "contentMediaType": "application/json"})
]


class _StreamEvent(BaseModel):
    """One event as `sse_frame` writes it."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=EVENT_ID["pattern"])]
    data: _EventData
    retry: int | None = None


class JobStreamEvent(_StreamEvent):
    event: Annotated[str, Field(pattern=r"^job\.")]


class BatchStreamEvent(_StreamEvent):
    event: Annotated[str, Field(pattern=r"^batch\.")]


def stream_operation(owner: str, event: type[_StreamEvent]) -> Operation:
    return Operation(
        f"A {owner}'s events as Server-Sent Events, closing after its final one",
        (Reply(200, "the event stream", {"text/event-stream": event}),),
        params=(RESUME,),
        errors={404: (f"{owner.upper()}_NOT_FOUND",), 422: ("INVALID_EVENT_ID",)},
    )


@documented(stream_operation("job", JobStreamEvent))
async def job_events(request: Request) -> Response:
    rt = runtime(request)
    job = await own_job(request, rt.jobs)

    async def has_ended() -> bool:
        latest = await rt.jobs.get(job.id)
        if latest is None:  # expired: nothing more will come
            return True
        # A status never streamed (a worker died before publishing it, or the job is still
        # queued) is added now; its sequence keeps it from being added twice.
        await stream_status(rt, latest)
        return latest.status in TERMINAL

    return sse_response(request, job.id, JOB_TERMINAL_EVENTS, has_ended=has_ended)


def sse_response(
    request: Request,
    owner_id: str,
    terminal_types: frozenset[str],
    *,
    has_ended: HasEnded | None = None,
) -> Response:
    """The owner's events after `Last-Event-ID` as SSE, closing after a terminal type.

    Call it once the caller is known to own `owner_id`. `has_ended` is asked at the start and
    whenever the stream is idle, so a stream resumed after the owner's last event closes at once;
    by default the owner has ended when the newest event in its stream is a terminal one.
    """
    rt = runtime(request)
    watch = _Watch(
        owner_id=owner_id,
        terminal_types=terminal_types,
        after=_resume_point(request),
        heartbeat_s=rt.settings.api.sse_heartbeat_s,
        has_ended=has_ended or partial(_ends_terminal, rt.redis, owner_id, terminal_types),
    )
    return EventStreamResponse(rt.settings.redis.url, watch)


@dataclass(frozen=True)
class _Watch:
    owner_id: str
    terminal_types: frozenset[str]
    after: str  # the stream entry id to continue after
    heartbeat_s: float
    has_ended: HasEnded


class EventStreamResponse(Response):
    """`text/event-stream` that follows one owner's stream until its end or the client's."""

    media_type = "text/event-stream"

    def __init__(self, redis_url: str, watch: _Watch) -> None:
        self.status_code = 200
        self.background = None
        # Proxies must neither cache nor buffer a stream (nginx reads X-Accel-Buffering).
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self._redis_url = redis_url
        self._watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = Redis.from_url(self._redis_url, single_connection_client=True)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._send_events, reader, send, tasks.cancel_scope)
                # A client that leaves cancels the read it is waiting on, at once.
                await _until_disconnected(receive)
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await reader.aclose()

    async def _send_events(self, reader: Redis, send: Send, scope: anyio.CancelScope) -> None:
        try:
            async with aclosing(_frames(reader, self._watch)) as frames:
                async for frame in frames:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
        except RedisError as exc:
            # The client reconnects after `retry:` and resumes from the last id it received.
            log.warning("event stream of %s broke off: %s", self._watch.owner_id, exc)
        except OSError:
            scope.cancel()  # the client has gone (servers of ASGI spec 2.4 say so this way)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        scope.cancel()


async def _frames(reader: Redis, watch: _Watch) -> AsyncGenerator[bytes, None]:
    yield f"retry: {RETRY_MS}\n\n".encode()
    after = watch.after
    ended = await watch.has_ended()
    while True:
        # An owner that has ended adds nothing more: send what is left without waiting.
        block_s = None if ended else watch.heartbeat_s
        events = await read_events(reader, watch.owner_id, after, block_s=block_s)
        if not events:
            if ended:
                return
            yield b": keep-alive\n\n"
            ended = await watch.has_ended()
            continue
        for event in events:
            yield sse_frame(event)
            after = event.id
            if event.type in watch.terminal_types:
                return


async def _ends_terminal(redis: Redis, owner_id: str, terminal_types: frozenset[str]) -> bool:
    return await last_event_type(redis, owner_id) in terminal_types


def sse_frame(event: StreamEvent) -> bytes:
    """One event in SSE wire format; multi-line data becomes several `data:` lines."""
    lines = [f"id: {event.id}", f"event: {event.type}"]
    lines += [f"data: {line}" for line in event.data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def _resume_point(request: Request) -> str:
    """The entry id to continue after: `Last-Event-ID`, else `?last_event_id=`, else the start."""
    candidates = [
        ("Last-Event-ID", request.headers.get("last-event-id", "")),
        ("last_event_id", request.query_params.get("last_event_id", "")),
    ]
    for field, raw in candidates:
        if not raw.strip():
            continue
        match = _ENTRY_ID.fullmatch(raw.strip())
        parts = [int(part) for part in match.groups("0")] if match else []
        if not parts or max(parts) >= 2**64:
            raise InvalidInput(
                f"{field} must be the id of an event this stream sent, like 1763900000000-0",
                code="INVALID_EVENT_ID",
                field=field,
            )
        return f"{parts[0]}-{parts[1]}"
    return "0-0"


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


routes = [
    ClientRoute("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
]
