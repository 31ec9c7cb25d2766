"""Generated images that storage could not take, kept until it can: paid for once, never twice.

They are kept in Redis under the client and the exact provider request, so the job run again
(after a crash) or submitted again by its client with the same input finds them instead of
calling the provider. Only an outage puts them there; storing them takes them out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.keys import KEYS

# Long enough to span an outage and a client's retry of the job; short enough not to hoard.
KEEP_S = 86400


@dataclass(frozen=True)
class Generation:
    """What a provider call produced: the images, and the call's figures for the job's output."""

    images: list[bytes]
    provider: dict[str, Any]


class KeptImages:
    def __init__(self, redis: Redis, client_id: str, request: dict[str, Any]) -> None:
        self._redis = redis
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        self._key = KEYS.generated_images(client_id, digest)

    async def find(self) -> Generation | None:
        kept: dict[bytes, bytes] = await self._redis.hgetall(self._key)  # type: ignore[misc]
        if not kept:
            return None
        provider = json.loads(kept.pop(b"provider"))
        return Generation([kept[str(i).encode()] for i in range(len(kept))], provider)

    async def keep(self, generation: Generation) -> None:
        fields: dict[str, bytes | str] = {"provider": json.dumps(generation.provider)}
        fields |= {str(i): image for i, image in enumerate(generation.images)}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key)
            pipe.hset(self._key, mapping=fields)
            pipe.expire(self._key, KEEP_S)
            await pipe.execute()

    async def forget(self) -> None:
        await self._redis.delete(self._key)
