"""The Starlette application: routes, error responses, and the runtime it opens and closes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import OutOfMemoryError, RedisError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.error_body import error_body
from service.api.rate_limits import RateLimitHeaders
from service.api.routes import (
    batch_outcomes,
    batch_pauses,
    batches,
    brand_lists,
    deliveries,
    endpoints,
    estimate,
    files,
    jobs,
    metrics,
    system,
    usage,
)
from service.api.routes import live_events as events
from service.api.security_headers import API_HEADERS, SecurityHeaders, add_missing
from service.batches.engine import follow_items
from service.config import Settings
from service.console.routes import console
from service.errors import ApiError, ServiceUnavailable
from service.jobs.metrics import JobMetrics
from service.logs import bind, request_id
from service.runtime import Runtime
from service.storage import StorageUnavailable

log = logging.getLogger("pixhook.api")


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.runtime = await Runtime.open(settings)
        follow_items(app.state.runtime)  # a cancel ends batch items too
        try:
            yield
        finally:
            await app.state.runtime.close()

    return Starlette(
        routes=[
            *jobs.routes,
            *events.routes,
            *batches.routes,
            *batch_outcomes.routes,
            *batch_pauses.routes,
            *usage.routes,
            *deliveries.routes,
            *endpoints.routes,
            *brand_lists.routes,
            *estimate.routes,
            *files.routes,
            *system.routes,
            *metrics.routes,
            console,
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(RequestIds),
            Middleware(SecurityHeaders),
            Middleware(RateLimitHeaders),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            RedisError: _redis_error,
            Exception: _unexpected_error,
        },
    )


class RequestIds:
    """Each request runs under its `X-Request-ID` (the caller's, or a new one), which the response
    echoes and every line logged for it carries; one line per request replaces uvicorn's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"x-request-id")
        rid = request_id(header.decode("latin-1") if header is not None else None)
        started, status = time.perf_counter(), [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        with bind(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                # The path only: a query string is the caller's, and may hold what must not be kept.
                log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status[0],
                    (time.perf_counter() - started) * 1000,
                )


def error_response(
    status_code: int, code: str, message: str, field: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status_code)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status_code, exc.code, exc.message, exc.field)
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, StorageUnavailable):
        try:
            await JobMetrics(request.app.state.runtime.redis).storage_failed(exc.operation)
        except RedisError as redis_exc:
            # The caller is owed the failure that stopped its request, not the count's.
            log.warning("could not count a storage failure: %s", redis_exc)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    code = codes.get(exc.status_code, "HTTP_ERROR")
    return error_response(exc.status_code, code, str(exc.detail), None)


async def _redis_error(request: Request, exc: Exception) -> Response:
    # Redis down or full (noeviction refuses writes): nothing was accepted, so never answer 2xx.
    log.error("redis error on %s %s: %s", request.method, request.url.path, exc)
    # "Storage" is the object store (S3) everywhere else: this names what is down.
    trouble = "full (it refuses writes)" if isinstance(exc, OutOfMemoryError) else "unavailable"
    return await _api_error(request, ServiceUnavailable(f"Redis is {trouble}; try again shortly"))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    response = error_response(500, "INTERNAL_ERROR", "an unexpected error occurred")
    # Starlette answers this outside every middleware, so the headers are added here.
    add_missing(response.headers, API_HEADERS)
    return response
