"""Health, readiness and what this deployment offers."""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service import imaging
from service.auth import runtime
from service.config import Settings
from service.errors import UNAVAILABLE_RETRY_AFTER_S
from service.tasks import JOB_TYPES

log = logging.getLogger("pixhook.api")


async def healthcheck(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    try:
        await runtime(request).redis.ping()
    except (RedisError, OSError) as exc:
        # Unauthenticated: the reason goes to the log, not to whoever asks.
        log.warning("not ready: Redis does not answer: %s", exc)
        return JSONResponse(
            {"status": "unavailable", "redis": "unreachable"},
            status_code=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )
    return JSONResponse({"status": "ready"})


async def info(request: Request) -> JSONResponse:
    settings = runtime(request).settings
    return JSONResponse(
        {
            "name": "pixhook",
            "version": version("pixhook"),
            "job_types": sorted(JOB_TYPES),
            "output_formats": sorted(imaging.OUTPUT_FORMATS),
            "input_formats": sorted(imaging.INPUT_FORMATS),
            "providers": providers(settings),
            "limits": settings.limits(),
            "webhooks": {
                "retry_schedule_s": list(settings.webhook_retry_schedule.delays_s),
                "signature": "Standard Webhooks v1 (HMAC-SHA256)",
            },
        }
    )


def providers(settings: Settings) -> list[dict[str, Any]]:
    """The configured providers: where they are and which models the job types use by default,
    and whether a key is set, never the key (/info answers anyone)."""
    if not settings.openai_base_url:
        return []
    return [
        {
            "name": "openai",
            "host": _host(settings.openai_base_url),
            "models": {
                "image.analyze": settings.openai_vision_model,
                "image.generate": settings.openai_image_model,
            },
            "api_key_set": bool(settings.openai_api_key),
        }
    ]


def _host(url: str) -> str:
    """The host and port of `url`, without any user name or password it carries."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host if parts.port is None else f"{host}:{parts.port}"


routes = [
    Route("/healthcheck", healthcheck, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/info", info, methods=["GET"]),
]
