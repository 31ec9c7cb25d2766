"""A batch's items stored as they are read, and the batch made of them once all are in.

Items are checked and appended to the batch's staged list a chunk at a time, so a file of any
size passes through a few chunks of memory. The staged list becomes the batch's items in one
step (`BatchStore.commit`) only after the last item: a reader that dies half way leaves a
staged list that expires, never a batch that runs on half of its file. A refused batch (too
many items, a malformed file) has its staged items deleted before the refusal is answered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from service.batches import engine
from service.batches.intake import BatchPlan, ItemMaker, check_count
from service.batches.item_streams import CsvRows, ItemsFormat, item_stream
from service.batches.views import RESULTS_MEDIA_TYPE
from service.config import Settings
from service.jobs.batch_store import Batch, BatchStore
from service.runtime import Runtime
from service.storage import job_file_key

CHUNK_ITEMS = 1000  # items checked and appended to Redis at a time: one pipeline each...
CHUNK_BYTES = 1024 * 1024  # ...or fewer, once they took this much of the file
_REFUSED_CHUNK = 500
_REFUSED_LOCK_S = 30.0
_RENEW_EVERY_S = 5.0  # a reader's lease, while the file arrives however slowly


@dataclass(frozen=True)
class Received:
    total: int
    refused: int


class _Stager:
    """Collects items into chunks, checks each chunk and appends it to the staged lists."""

    def __init__(
        self,
        store: BatchStore,
        batch_id: str,
        maker: ItemMaker,
        settings: Settings,
        renew: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self._store, self._batch_id, self._maker = store, batch_id, maker
        self._settings, self._renew = settings, renew
        self._waiting: list[Any] = []
        self._waiting_bytes = 0
        self._renewed = time.monotonic()
        self.total = 0
        self.refused = 0

    async def add(self, items: list[Any], size: int = 0) -> None:
        """Add the items read from `size` bytes of the file."""
        for item in items:
            self._waiting.append(item)
            self.total += 1
            if self.total > self._settings.limits.max_batch_items:
                check_count(self.total, self._settings)  # refused before the rest is read
            if len(self._waiting) >= CHUNK_ITEMS:
                await self.flush()
        self._waiting_bytes += size
        if self._waiting_bytes >= CHUNK_BYTES:
            await self.flush()
        if self._renew is not None and time.monotonic() - self._renewed > _RENEW_EVERY_S:
            await self._renew()
            self._renewed = time.monotonic()

    async def flush(self) -> None:
        if not self._waiting:
            return
        first = self.total - len(self._waiting)
        waiting, self._waiting = self._waiting, []
        self._waiting_bytes = 0
        entries, refused = await asyncio.to_thread(
            self._maker.entries, first, waiting, self._settings
        )
        self.refused += len(refused)
        errors = [(index, json.dumps(error, separators=(",", ":"))) for index, error in refused]
        await self._store.stage(self._batch_id, entries, errors)

    async def done(self) -> Received:
        await self.flush()
        check_count(self.total, self._settings)
        return Received(self.total, self.refused)


async def stage_items(
    store: BatchStore, batch_id: str, maker: ItemMaker, items: Iterable[Any], settings: Settings
) -> Received:
    """Stage the items of a JSON batch (a list already read)."""
    stager = _Stager(store, batch_id, maker, settings, None)
    try:
        await stager.add(list(items))
        return await stager.done()
    except BaseException:
        await store.discard_staged(batch_id)
        raise


async def stage_file(
    store: BatchStore,
    batch_id: str,
    maker: ItemMaker,
    chunks: AsyncIterator[bytes],
    items_format: ItemsFormat,
    settings: Settings,
    source: str,
    *,
    renew: Callable[[], Awaitable[None]] | None = None,
) -> Received:
    """Stage the items of a CSV or JSON lines file as its chunks arrive; `source` (the file's
    part, or `items_url`) is the field of its errors; `renew` is awaited after each chunk."""
    stream = item_stream(items_format, source)
    stager = _Stager(store, batch_id, maker, settings, renew)
    checked_columns = False
    try:
        async for chunk in chunks:
            items = stream.feed(chunk)
            if isinstance(stream, CsvRows) and stream.columns is not None and not checked_columns:
                maker.check_columns(stream.columns)
                checked_columns = True
            await stager.add(items, len(chunk))
        items = stream.close()
        if isinstance(stream, CsvRows) and stream.columns is not None and not checked_columns:
            maker.check_columns(stream.columns)
        await stager.add(items)
        return await stager.done()
    except BaseException:
        await store.discard_staged(batch_id)
        raise


def new_batch(
    batch_id: str, client_id: str, plan: BatchPlan, created_at: float, total: int
) -> Batch:
    """The record of a batch as its spec describes it; `total` 0 while its items are read."""
    return Batch(
        id=batch_id,
        client_id=client_id,
        type=plan.type,
        status="receiving" if total == 0 else "running",
        created_at=created_at,
        total=total,
        concurrency=plan.concurrency,
        results_key=job_file_key(client_id, batch_id, created_at, "results.jsonl"),
        upload_id="",
        webhook_url=plan.webhook_url,
        webhook_events=plan.webhook_events,
        item_webhooks=plan.item_webhooks,
        metadata=plan.metadata,
        items_url=plan.items_url,
        item_attempts=plan.item_attempts,
        max_cost=plan.max_cost,
    )


async def open_batch(runtime: Runtime, batch: Batch, received: Received) -> bool:
    """Make the staged items the batch's and start it: record the items refused at intake, then
    start the first items. False when the batch is no longer receiving (canceled meanwhile)."""
    upload_id = await runtime.storage.start_parts(batch.results_key, media_type=RESULTS_MEDIA_TYPE)
    running = replace(batch, status="running", total=received.total, upload_id=upload_id)
    if not await runtime.batches.commit(running):
        await runtime.batches.discard_staged(batch.id)
        return False
    await record_refused(runtime, running)
    await engine.fill(runtime, batch.id)
    return True


async def record_refused(runtime: Runtime, batch: Batch) -> None:
    """Record the items refused at intake, a chunk at a time, under a lock: the API does it as
    the batch opens, and `reconcile_refused` finishes what an API that died left."""
    token = secrets.token_hex(8)
    if not await runtime.batches.lock(batch.id, "refused", token, _REFUSED_LOCK_S):
        return  # another process is recording them
    try:
        while refused := await runtime.batches.refused(batch.id, _REFUSED_CHUNK):
            for index, error in refused:
                await engine.record_refused(runtime, batch, index, error)
            await runtime.batches.drop_refused(batch.id, len(refused))
            await runtime.batches.lock_renew(batch.id, "refused", token, _REFUSED_LOCK_S)
    finally:
        await runtime.batches.unlock(batch.id, "refused", token)


async def reconcile_refused(runtime: Runtime) -> None:
    """Record the refused items of running batches whose opener died before it had."""
    for batch_id in await runtime.batches.running():
        if await runtime.batches.has_refused(batch_id):
            batch = await runtime.batches.get(batch_id)
            if batch is not None and batch.status == "running":
                await record_refused(runtime, batch)
