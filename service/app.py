"""The Starlette application: routes, error responses, and the runtime it opens and closes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.config import Settings
from service.errors import ApiError
from service.routes import batches, deliveries, events, files, jobs, metrics, system
from service.runtime import Runtime

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
        ],
        lifespan=lifespan,
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
    return error_response(exc.status_code, exc.code, exc.message, exc.field)


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
    return error_response(500, "INTERNAL_ERROR", "an unexpected error occurred")
