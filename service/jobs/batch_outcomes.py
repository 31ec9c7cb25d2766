"""What became of a batch's items, read from the records `batch_store.py` writes as they end:
the items of one status in index order, the errors of failed ones, and the figures of the
batch's summary (failed items by code, latencies by bucket).

Outcomes are three bitmaps (`done`, `failed`, `canceled`: an item done and in neither
succeeded), 3 bits an item, and a hash of failed items' errors by index; keys are listed in
batch_store.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from service.keys import PREFIX, Keys

ItemStatus = Literal["succeeded", "failed", "canceled", "running"]
MAX_FAILURES_SHOWN = 100
# Items read from the bitmaps at a time when paging them: 8 KB of each.
_SCAN_BITS = 65536
# Item latencies are counted in buckets this many times wider than the last: percentiles read
# from them are within 5% of the exact figure, in a hash of at most a few hundred fields.
LATENCY_RATIO = 1.1


@dataclass(frozen=True)
class BatchStats:
    """What the batch's summary is figured from, besides its counts."""

    codes: dict[str, int]  # failed items by error code
    latency: dict[int, int]  # items by latency bucket


def latency_bucket(seconds: float) -> int:
    """The bucket of a latency: bucket b holds LATENCY_RATIO**b to **(b+1) milliseconds."""
    return max(0, math.floor(math.log(max(seconds * 1000, 1.0), LATENCY_RATIO)))


def bucket_ms(bucket: int) -> float:
    """A bucket's middle, in milliseconds (geometric)."""
    return float(LATENCY_RATIO ** (bucket + 0.5))


class BatchOutcomes:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._keys = Keys(prefix)

    def _key(self, batch_id: str, part: str = "") -> str:
        return self._keys.batch(batch_id, part)

    async def in_flight(self, batch_id: str) -> list[int]:
        members = await self._redis.smembers(self._key(batch_id, "inflight"))  # type: ignore[misc]
        return sorted(int(m) for m in members)

    async def errors(self, batch_id: str, indexes: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The recorded errors of these failed items, by index."""
        if not indexes:
            return {}
        raw = await self._redis.hmget(self._key(batch_id, "errors"), list(indexes))  # type: ignore[misc]
        return {i: json.loads(r) for i, r in zip(indexes, raw, strict=True) if r is not None}

    async def indexes(
        self, batch_id: str, status: ItemStatus | None, after: int, limit: int, total: int
    ) -> list[int]:
        """Up to `limit` indexes greater than `after` of the items whose outcome is `status`
        (`running`: in flight; None: every item that has ended), in order."""
        if status == "running":
            return [i for i in await self.in_flight(batch_id) if i > after][:limit]
        found: list[int] = []
        position = after + 1
        while len(found) < limit and position < total:
            end = min(total, position + _SCAN_BITS)
            found += await self._matching(batch_id, status, position, end)
            position = end
        return found[:limit]

    async def _matching(
        self, batch_id: str, status: ItemStatus | None, start: int, end: int
    ) -> list[int]:
        """Indexes from `start` to `end` - 1 whose outcome is `status` (None: ended at all)."""
        first, last = start // 8, (end - 1) // 8
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in ("done", "failed", "canceled"):
                pipe.getrange(self._key(batch_id, name), first, last)
            raw = await pipe.execute()
        # As big integers: a chunk's bitmaps are combined in one operation each, not bit by bit.
        size = last - first + 1
        done, failed, canceled = (int.from_bytes(r.ljust(size, b"\0"), "big") for r in raw)
        if status == "failed":
            chosen = failed
        elif status == "canceled":
            chosen = canceled
        elif status == "succeeded":
            chosen = done & ~failed & ~canceled
        else:
            chosen = done
        found = []
        for offset, byte in enumerate(chosen.to_bytes(size, "big")):
            if byte:  # SETBIT's bit 0 is a byte's highest
                base = (first + offset) * 8
                found += [base + b for b in range(8) if byte & (0x80 >> b)]
        return [i for i in found if start <= i < end]

    async def stats(self, batch_id: str) -> BatchStats:
        """Failed items by error code, and item latencies by bucket."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._key(batch_id, "codes"))
            pipe.hgetall(self._key(batch_id, "latency"))
            codes, latency = await pipe.execute()
        return BatchStats(
            {k.decode(): int(v) for k, v in codes.items() if int(v) > 0},
            {int(k): int(v) for k, v in latency.items() if int(v) > 0},
        )

    async def drop_retries(self, batch_id: str) -> list[int]:
        """Items asked to run again and not yet claimed, no longer to be: for a cancel."""
        key = self._key(batch_id, "retry")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            pending, _ = await pipe.execute()
        return [int(i) for i in pending]

    async def rerun_pending(self, batch_id: str) -> set[int]:
        """Items claimed to run again whose job is not yet queued again."""
        members = await self._redis.smembers(self._key(batch_id, "rerun"))  # type: ignore[misc]
        return {int(m) for m in members}

    async def rerun_started(self, batch_id: str, index: int) -> None:
        await self._redis.srem(self._key(batch_id, "rerun"), index)  # type: ignore[misc]

    async def failures(self, batch_id: str, total: int) -> list[dict[str, Any]]:
        """The first MAX_FAILURES_SHOWN failed items, `{index, error}`."""
        if not await self._redis.exists(self._key(batch_id, "failed")):
            return []
        indexes = await self.indexes(batch_id, "failed", -1, MAX_FAILURES_SHOWN, total)
        errors = await self.errors(batch_id, indexes)
        return [
            {"index": i, "error": {k: v for k, v in e.items() if k in ("code", "message", "field")}}
            for i, e in errors.items()
        ]
