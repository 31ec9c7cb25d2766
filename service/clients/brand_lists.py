"""A client's named brand lists: stored once, referenced by `image.analyze` jobs by name, so a
list of thousands of brands is neither sent with every job nor put in every prompt."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from service.errors import InvalidInput
from service.keys import KEYS, Keys

MAX_BRANDS = 5_000
MAX_BRAND_CHARS = 100
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@dataclass(frozen=True)
class BrandList:
    name: str
    brands: tuple[str, ...]
    # Changes whenever the brands do: cached answers matched against another version are not
    # served.
    version: str
    updated_at: float


@dataclass(frozen=True)
class BrandListSummary:
    name: str
    count: int
    version: str
    updated_at: float


def list_version(brands: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(brands).encode()).hexdigest()[:16]


class BrandLists:
    def __init__(self, redis: Redis, keys: Keys = KEYS) -> None:
        self._redis = redis
        self._keys = keys

    async def put(self, client_id: str, name: str, brands: list[str]) -> BrandList:
        """Store (or replace) the list; duplicates and surrounding whitespace removed."""
        kept = tuple(sorted({brand.strip() for brand in brands}))
        stored = BrandList(name, kept, list_version(kept), time.time())
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.brand_list(client_id, name),
                mapping={
                    "brands": json.dumps(kept),
                    "count": len(kept),
                    "version": stored.version,
                    "updated_at": stored.updated_at,
                },
            )
            pipe.sadd(self._keys.brand_lists(client_id), name)
            await pipe.execute()
        return stored

    async def get(self, client_id: str, name: str) -> BrandList | None:
        fields = await self._redis.hgetall(self._keys.brand_list(client_id, name))  # type: ignore[misc]
        if not fields:
            return None
        return BrandList(
            name,
            tuple(json.loads(fields[b"brands"])),
            fields[b"version"].decode(),
            float(fields[b"updated_at"]),
        )

    async def version(self, client_id: str, name: str) -> str | None:
        """The list's version, without reading its brands; None if there is no such list."""
        value = await self._redis.hget(  # type: ignore[misc]
            self._keys.brand_list(client_id, name), "version"
        )
        return None if value is None else bytes(value).decode()

    async def require(self, client_id: str, name: str | None) -> None:
        """At a job's submission: the list it names exists (InvalidInput if not)."""
        if name is not None and await self.version(client_id, name) is None:
            raise InvalidInput(
                f"there is no brand list {name!r}; store it with PUT /v1/brand-lists/{name}",
                code="BRAND_LIST_NOT_FOUND",
                field="input.brand_list",
            )

    async def summaries(self, client_id: str) -> list[BrandListSummary]:
        members = await self._redis.smembers(self._keys.brand_lists(client_id))  # type: ignore[misc]
        names = sorted(member.decode() for member in members)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(
                    self._keys.brand_list(client_id, name), ["count", "version", "updated_at"]
                )
            rows = await pipe.execute()
        return [
            BrandListSummary(name, int(count), version.decode(), float(updated_at))
            for name, (count, version, updated_at) in zip(names, rows, strict=True)
            if version is not None
        ]

    async def delete(self, client_id: str, name: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.brand_list(client_id, name))
            pipe.srem(self._keys.brand_lists(client_id), name)
            deleted, _ = await pipe.execute()
        return bool(deleted)
