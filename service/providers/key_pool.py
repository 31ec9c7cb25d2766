"""A provider's API keys: calls spread over the keys in rotation, and a key the provider refuses
(401/403) leaves the rotation for every worker, until the operator puts it back or the process
starts with keys that are not all out.

Keys are known by an id (a digest: the key itself is never stored or shown) and a hint, their
last four characters, as providers' own dashboards show them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from service.config import Settings
from service.keys import KEYS
from service.providers.errors import (
    PROVIDER_KEYS_EXHAUSTED,
    PROVIDER_NOT_CONFIGURED,
    ProviderError,
)

log = logging.getLogger("pixhook.providers")

PROVIDERS = ("anthropic", "openai")
_ENV = {"anthropic": "PIXHOOK_ANTHROPIC_API_KEYS", "openai": "PIXHOOK_OPENAI_BASE_URL"}


@dataclass(frozen=True)
class ApiKey:
    value: str = field(repr=False)
    id: str
    hint: str


def api_key(value: str) -> ApiKey:
    return ApiKey(value, hashlib.sha256(value.encode()).hexdigest()[:12], value[-4:])


@dataclass(frozen=True)
class KeyState:
    """One key as /info, /metrics and the console show it."""

    id: str
    hint: str
    in_rotation: bool
    # Out of rotation: the status that took it out, the provider's message, and when.
    status: int | None = None
    message: str | None = None
    since: float | None = None

    def view(self) -> dict[str, Any]:
        return {
            "hint": f"…{self.hint}",
            "in_rotation": self.in_rotation,
            "status": self.status,
            "message": self.message,
            "out_since": self.since,
        }


class KeyPool:
    def __init__(self, redis: Redis, provider: str, keys: tuple[str, ...]) -> None:
        self.provider = provider
        self.keys = tuple(api_key(value) for value in keys)
        self._redis = redis
        self._out_key = KEYS.provider_keys_out(provider)

    @classmethod
    def of(cls, settings: Settings, redis: Redis, provider: str) -> KeyPool:
        """The provider's pool; PROVIDER_NOT_CONFIGURED when it has no address or no key."""
        keys = settings.providers.keys(provider)
        if not settings.providers.base_url(provider) or not keys:
            raise ProviderError(
                f"{provider} is not configured: set {_ENV[provider]} and its API keys",
                code=PROVIDER_NOT_CONFIGURED,
                retryable=False,
            )
        return cls(redis, provider, keys)

    async def in_rotation(self) -> list[ApiKey]:
        """The keys calls may use now; PROVIDER_KEYS_EXHAUSTED when the provider refused all."""
        out = {key.decode() for key in await self._redis.hkeys(self._out_key)}  # type: ignore[misc]
        usable = [key for key in self.keys if key.id not in out]
        if not usable:
            raise ProviderError(
                f"every {self.provider} API key was refused and is out of rotation "
                f"({', '.join('…' + key.hint for key in self.keys)}): add a key, or put one back "
                "once the provider accepts it again",
                code=PROVIDER_KEYS_EXHAUSTED,
                retryable=False,
            )
        return usable

    async def is_out(self, key: ApiKey) -> bool:
        """Whether `key` has left the rotation (since a call read the keys in rotation)."""
        return bool(await self._redis.hexists(self._out_key, key.id))  # type: ignore[misc]

    async def take_out(self, key: ApiKey, error: ProviderError) -> None:
        """Every worker stops using `key`: the provider refused it."""
        record = {"status": error.status, "message": str(error)[:300], "since": time.time()}
        added = await self._redis.hsetnx(self._out_key, key.id, json.dumps(record))  # type: ignore[misc]
        if added:
            log.warning(
                "%s API key …%s taken out of rotation: the provider answered %s",
                self.provider,
                key.hint,
                error.status,
            )

    async def put_back(self, hint: str | None = None) -> list[str]:
        """The operator says these keys (all, or those ending in `hint`) may be tried again;
        returns the hints put back."""
        chosen = [key for key in self.keys if hint is None or key.hint == hint.lstrip("…")]
        if chosen:
            removed = await self._redis.hdel(self._out_key, *(key.id for key in chosen))  # type: ignore[misc]
            if removed:
                log.info("%s API keys put back in rotation by the operator", self.provider)
        return [key.hint for key in chosen]

    async def forget_unknown(self) -> None:
        """Drop records of keys no longer configured, so a key added replaces a revoked one."""
        known = {key.id for key in self.keys}
        stale = [k for k in await self._redis.hkeys(self._out_key) if k.decode() not in known]  # type: ignore[misc]
        if stale:
            await self._redis.hdel(self._out_key, *stale)  # type: ignore[misc]

    async def states(self) -> list[KeyState]:
        out = await self._redis.hgetall(self._out_key)  # type: ignore[misc]
        records = {k.decode(): json.loads(v) for k, v in out.items()}
        return [
            KeyState(key.id, key.hint, True)
            if key.id not in records
            else KeyState(
                key.id,
                key.hint,
                False,
                records[key.id].get("status"),
                records[key.id].get("message"),
                records[key.id].get("since"),
            )
            for key in self.keys
        ]
