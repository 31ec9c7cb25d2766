"""The providers' keys checked when a jobs worker starts: records of keys no longer configured
are dropped (a key added replaces those refused), and each key in rotation is tried with a cheap
authenticated call, so a revoked key leaves the rotation before a job pays for finding out."""

from __future__ import annotations

import logging

import httpx
from redis.asyncio import Redis

from service.config import Settings
from service.providers.calls import ProviderCalls
from service.providers.errors import PROVIDER_KEYS_EXHAUSTED, ProviderError
from service.providers.key_pool import PROVIDERS, KeyPool

log = logging.getLogger("pixhook.providers")


def configured_providers(settings: Settings) -> list[str]:
    return [
        name
        for name in PROVIDERS
        if settings.providers.base_url(name) and settings.providers.keys(name)
    ]


async def check_provider_keys(
    settings: Settings, redis: Redis, http: httpx.AsyncClient
) -> list[str]:
    """Checks every configured provider's keys; returns the providers with a key in rotation
    (a key that could not be checked, the provider being unreachable, stays in it)."""
    calls, usable = ProviderCalls(settings, redis, http), []
    for name in configured_providers(settings):
        pool = KeyPool.of(settings, redis, name)
        await pool.forget_unknown()
        try:
            for key, error in await calls.check_keys(name):
                if error is not None:
                    log.warning("%s API key …%s failed its check: %s", name, key.hint, error)
            await pool.in_rotation()
        except ProviderError as exc:
            if exc.code != PROVIDER_KEYS_EXHAUSTED:
                raise
            log.warning("%s: no API key in rotation: %s", name, exc)
            continue
        usable.append(name)
    return usable
