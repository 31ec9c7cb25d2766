"""The Starlette application: routes, error responses, and the runtime it opens and closes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.admission import RateLimitHeaders
from service.config import Settings
from service.errors import ApiError, TooManyRequests
from service.routes import batches, deliveries, events, files, jobs, metrics, schema, system
from service.runtime import Runtime
from service.security_headers import API_HEADERS, SecurityHeaders, add_missing

log = logging.getLogger("pixhook.api")


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.runtime = await Runtime.open(settings)
        try:
            yield
        finally:
            await app.state.runtime.close()

    return Starlette(
        routes=[
            *jobs.routes,
            *events.routes,
            *batches.routes,
            *deliveries.routes,
            *files.routes,
            *system.routes,
            *metrics.routes,
            *schema.routes,
        ],
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders), Middleware(RateLimitHeaders)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            RedisError: _redis_error,
            Exception: _unexpected_error,
        },
    )


def error_response(
    status_code: int, code: str, message: str, field: str | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status_code
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status_code, exc.code, exc.message, exc.field)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    code = codes.get(exc.status_code, "HTTP_ERROR")
    return error_response(exc.status_code, code, str(exc.detail), None)


async def _redis_error(request: Request, exc: Exception) -> Response:
    # Redis down or full (noeviction refuses writes): nothing was accepted, so never answer 2xx.
    log.error("redis error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "SERVICE_UNAVAILABLE", "storage is unavailable; try again shortly")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    response = error_response(500, "INTERNAL_ERROR", "an unexpected error occurred")
    # Starlette answers this outside every middleware, so the headers are added here.
    add_missing(response.headers, API_HEADERS)
    return response
