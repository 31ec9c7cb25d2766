"""Storage as a running job uses it: a write that meets an outage is tried again.

A job's outputs are often paid for (a provider's image) or slow to make again; a storage blip of
a few seconds must not cost them. Reads are not retried: the input is read once, at the start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.backoff import backoff_s
from service.storage import Storage, StorageUnavailable, StoredFile

log = logging.getLogger("pixhook.storage")

T = TypeVar("T")

FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 10.0


class RetryingStorage:
    """`inner`, with each write tried again after StorageUnavailable, with jittered backoff, for
    as long as `until` (on the event loop's clock) allows; a try still running then is given up.
    `on_retry(operation)` hears of every failure that is tried again (for the metric)."""

    def __init__(
        self, inner: Storage, until: float, on_retry: Callable[[str], Awaitable[None]]
    ) -> None:
        self._inner = inner
        self._until = until
        self._on_retry = on_retry
        self.min_part_bytes = inner.min_part_bytes
        self.public_outputs = inner.public_outputs

    async def put(self, key: str, data: bytes, *, media_type: str | None = None) -> None:
        await self._patiently("put", lambda: self._inner.put(key, data, media_type=media_type))

    async def get(self, key: str) -> bytes:
        return await self._inner.get(key)

    def url(self, key: str, media_type: str) -> str:
        return self._inner.url(key, media_type)

    def resolve_link(self, token: str) -> StoredFile:
        return self._inner.resolve_link(token)

    async def start_parts(self, key: str, *, media_type: str) -> str:
        return await self._patiently(
            "parts", lambda: self._inner.start_parts(key, media_type=media_type)
        )

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> None:
        await self._patiently("parts", lambda: self._inner.put_part(key, upload_id, number, data))

    async def finish_parts(self, key: str, upload_id: str, count: int) -> None:
        await self._patiently("parts", lambda: self._inner.finish_parts(key, upload_id, count))

    async def _patiently(self, operation: str, write: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        attempt = 1
        while True:
            # A write hanging on a dead connection is abandoned at `until` (its thread finishes
            # on its own), so the job can still tell what failed before its own deadline; a job
            # that got there before its first write has only the job's deadline left to try.
            late = attempt == 1 and loop.time() >= self._until
            try:
                async with asyncio.timeout_at(None if late else self._until):
                    return await write()
            except TimeoutError as exc:
                message = "storage is unavailable (it did not answer in time); try again shortly"
                raise StorageUnavailable(message, operation=operation) from exc
            except StorageUnavailable as exc:
                wait_s = backoff_s(attempt, FIRST_BACKOFF_S, MAX_BACKOFF_S)
                if loop.time() + wait_s >= self._until:
                    raise
                log.info("storage %s failed (try %d); again in %.2fs", operation, attempt, wait_s)
                await self._on_retry(exc.operation)
                await asyncio.sleep(wait_s)
            attempt += 1
