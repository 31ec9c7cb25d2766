"""Health, readiness, what this deployment offers, and the OpenAPI document of the API."""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service import imaging
from service.api.event_payloads import EVENTS
from service.api.openapi import build_document
from service.api.openapi import retry_after_header as retry_after
from service.api.operations import JSON, Operation, Reply, Schema, documented
from service.api.system_views import Alive, Info, Ready, Unready
from service.clients.brand_lists import NAME_PATTERN
from service.config import Settings
from service.console.routes import console
from service.errors import UNAVAILABLE_RETRY_AFTER_S
from service.providers.key_pool import PROVIDERS, KeyPool, KeyState
from service.runtime import runtime
from service.tasks import JOB_TYPES
from service.tasks.provider_choice import default_model

log = logging.getLogger("pixhook.api")


PATH_PATTERNS = {
    "job_id": "^job_[0-9a-z_]{1,60}$",
    "batch_id": "^bat_[0-9a-z]{1,40}$",
    "delivery_id": "^dlv_[0-9a-z]{1,40}$",
    "endpoint_id": "^ep_[0-9a-z]{1,40}$",
    "list_name": NAME_PATTERN,
    # An itsdangerous token; never starting with '.', so no client collapses it as `..`.
    "token": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,1023}$",
}


@documented(Operation("Liveness", (Reply(200, "alive", {JSON: Alive}),), authenticated=False))
async def healthcheck(request: Request) -> JSONResponse:
    return JSONResponse(Alive.render({"status": "ok"}))


@documented(
    Operation(
        "Readiness: Redis answers (and, with PIXHOOK_READYZ_PROVIDERS, each configured "
        "provider has a key in rotation)",
        (
            Reply(200, "ready", {JSON: Ready}),
            Reply(
                503,
                "Redis is unreachable, or a provider has no key in rotation",
                {JSON: Unready},
                {"Retry-After": retry_after()},
            ),
        ),
        authenticated=False,
    )
)
async def readyz(request: Request) -> JSONResponse:
    try:
        await runtime(request).redis.ping()
    except (RedisError, OSError) as exc:
        # Unauthenticated: the reason goes to the log, not to whoever asks.
        log.warning("not ready: Redis does not answer: %s", exc)
        return JSONResponse(
            Unready.render({"status": "unavailable", "redis": "unreachable"}),
            status_code=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )
    settings = runtime(request).settings
    if settings.providers.readyz_providers:
        without_keys = [
            name
            for name in PROVIDERS
            if settings.providers.base_url(name)
            and not any(s.in_rotation for s in await _key_states(settings, request, name))
        ]
        if without_keys:
            log.warning("not ready: no API key in rotation for %s", ", ".join(without_keys))
            return JSONResponse(
                Unready.render({"status": "unavailable", "providers_without_keys": without_keys}),
                status_code=503,
                headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
            )
    return JSONResponse(Ready.render({"status": "ready"}))


async def _key_states(settings: Settings, request: Request, provider: str) -> list[KeyState]:
    keys = settings.providers.keys(provider)
    return await KeyPool(runtime(request).redis, provider, keys).states()


@documented(
    Operation(
        "Version, job types, formats and limits",
        (Reply(200, "this deployment", {JSON: Info}),),
        authenticated=False,
    )
)
async def info(request: Request) -> JSONResponse:
    settings = runtime(request).settings
    return JSONResponse(
        Info.render(
            {
                "name": "pixhook",
                "version": version("pixhook"),
                "job_types": sorted(JOB_TYPES),
                "output_formats": sorted(imaging.OUTPUT_FORMATS),
                "input_formats": sorted(imaging.INPUT_FORMATS),
                "providers": await providers(settings, runtime(request).redis),
                "limits": settings.listed_limits(),
                "webhooks": {
                    "retry_schedule_s": list(settings.deliveries.retry_schedule.delays_s),
                    "signature": "Standard Webhooks v1 (HMAC-SHA256)",
                },
            }
        )
    )


async def providers(settings: Settings, redis: Redis) -> list[dict[str, Any]]:
    """The configured providers: where they are, which models the job types use by default,
    and their keys' states by their last four characters, never a key (/info answers anyone)."""
    listed = []
    for name in PROVIDERS:
        base_url, keys = settings.providers.base_url(name), settings.providers.keys(name)
        if not base_url:
            continue
        states = await KeyPool(redis, name, keys).states()
        models = {
            "image.analyze": default_model(name, settings, "vision"),
            "text.generate": default_model(name, settings, "text"),
        }
        if name == "openai":
            models["image.generate"] = settings.providers.openai_image_model
        listed.append(
            {
                "name": name,
                "host": _host(base_url),
                "job_types": sorted(models),
                "models": models,
                "priced_models": _priced(settings, name),
                "api_key_set": bool(keys),
                "keys": [
                    {
                        "hint": f"…{state.hint}",
                        "in_rotation": state.in_rotation,
                        "status": state.status,
                        "out_since": state.since,
                    }
                    for state in states
                ],
            }
        )
    return listed


def _priced(settings: Settings, provider: str) -> list[str]:
    return sorted(model for p, model in settings.providers.prices.as_dict() if p == provider)


def _host(url: str) -> str:
    """The host and port of `url`, without any user name or password it carries."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host if parts.port is None else f"{host}:{parts.port}"


@documented(
    Operation(
        "This document",
        (Reply(200, "OpenAPI 3.1", {JSON: {"type": "object"}}),),
        authenticated=False,
    )
)
async def openapi_json(request: Request) -> JSONResponse:
    state = request.app.state
    if getattr(state, "openapi", None) is None:  # the same routes and settings until a restart
        state.openapi = openapi_document(request.app.routes, runtime(request).settings)
    return JSONResponse(state.openapi)


def openapi_document(routes: list[Any], settings: Settings) -> Schema:
    """The document for these routes, with the limits these settings set."""
    api = [route for route in routes if route is not console]  # pages for people, not the API
    return build_document(
        api,
        settings,
        path_patterns=PATH_PATTERNS,
        title="pixhook",
        version=version("pixhook"),
        webhooks=EVENTS,
    )


routes = [
    Route("/healthcheck", healthcheck, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/info", info, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
