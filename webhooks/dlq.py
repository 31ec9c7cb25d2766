"""The dead-letter queue: dead deliveries kept until replayed, purged, or past retention."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from webhooks.store import Delivery, DeliveryStore

log = logging.getLogger("pixhook.dlq")


@dataclass(frozen=True)
class DlqFilter:
    """Which dead deliveries: by host, by when they died (Unix seconds, inclusive), and by the
    endpoint they were for."""

    host: str | None = None
    since: float | None = None
    until: float | None = None
    endpoint_id: str | None = None

    def admits(self, delivery: Delivery) -> bool:
        # Host and time have indexes; an endpoint is checked on the records read.
        return self.endpoint_id is None or delivery.endpoint_id == self.endpoint_id


@dataclass(frozen=True)
class DlqPolicy:
    retention_s: float = 30 * 86400.0
    replay_rate_per_s: float = 50.0
    redrive_batch: int = 100
    redrive_rate_per_s: float = 10.0
    redrive_interval_s: float = 60.0
    # After this many auto-redrives a delivery that dies again waits for an explicit replay, so a
    # receiver that keeps refusing it is not sent it at every recovery of its host.
    redrive_limit: int = 3


@dataclass(frozen=True)
class DlqPage:
    deliveries: list[Delivery]
    next_cursor: int | None


class DeadLetters:
    def __init__(self, store: DeliveryStore, policy: DlqPolicy) -> None:
        self._store = store
        self._keys = store.keys
        self.policy = policy

    async def page(
        self, owner: str | None, where: DlqFilter, *, limit: int, cursor: int | None = None
    ) -> DlqPage:
        """Newest deaths first; pass `next_cursor` back to continue."""
        rows = await self._page(owner, where, limit, cursor)
        # Filtered by endpoint, a page may show fewer than `limit`; the cursor goes on from what
        # was read, so nothing is skipped.
        next_cursor = rows[-1][1] if len(rows) == limit else None
        return DlqPage([delivery for delivery, _ in rows if where.admits(delivery)], next_cursor)

    async def replay(self, owner: str | None, where: DlqFilter) -> int:
        """Re-queue every matching dead delivery, paced at `replay_rate_per_s`; how many."""
        count, cursor, start = 0, None, time.time()
        while True:
            rows = await self._page(owner, where, 500, cursor)
            for delivery, _ in rows:
                if not where.admits(delivery):
                    continue
                due_at = start + count / self.policy.replay_rate_per_s
                count += await self._store.requeue(delivery, due_at, only_dead=True)
            if len(rows) < 500:
                return count
            cursor = rows[-1][1]

    async def replay_one(self, owner: str | None, delivery_id: str) -> bool:
        delivery = await self._owned(owner, delivery_id)
        return delivery is not None and await self._store.requeue(
            delivery, time.time(), only_dead=True
        )

    async def purge(self, owner: str | None, delivery_id: str) -> bool:
        delivery = await self._owned(owner, delivery_id)
        return delivery is not None and await self._store.purge(delivery)

    async def _owned(self, owner: str | None, delivery_id: str) -> Delivery | None:
        """The delivery, if `owner` may see it (None: an operator, who sees all)."""
        delivery = await self._store.get(delivery_id)
        if delivery is None or (owner is not None and delivery.owner != owner):
            return None
        return delivery

    async def redrive(self, authority: str) -> int:
        """A host:port with redrivable dead deliveries (store.record says which) accepted one
        again: re-queue a paced batch of them, oldest first, at most once per
        `redrive_interval_s`, so a recovering receiver is not flooded."""
        if self.policy.redrive_batch == 0:
            return 0
        redis = self._store.redis
        gate = self._keys.redrive_gate(authority)
        if not await redis.set(gate, "1", nx=True, px=int(self.policy.redrive_interval_s * 1000)):
            return 0
        index = self._keys.dlq_redrivable(authority)
        ids = await redis.zrange(index, 0, self.policy.redrive_batch - 1)
        count, start = 0, time.time()
        for delivery in await self._store.get_many([raw_id.decode() for raw_id in ids]):
            if delivery is not None:
                due_at = start + count / self.policy.redrive_rate_per_s
                count += await self._store.requeue(delivery, due_at, only_dead=True, redrive=True)
        if count:
            log.info("%s recovered: re-queued %d dead deliveries", authority, count)
        return count

    async def expire(self) -> list[Delivery]:
        """Purge dead deliveries older than the retention, logging each; the ones purged."""
        cutoff_us = int((time.time() - self.policy.retention_s) * 1_000_000)
        redis = self._store.redis
        ids = await redis.zrangebyscore(self._keys.dlq, "-inf", cutoff_us, start=0, num=1000)
        purged = []
        deliveries = await self._store.get_many([raw_id.decode() for raw_id in ids])
        for raw_id, delivery in zip(ids, deliveries, strict=True):
            if delivery is None:
                await redis.zrem(self._keys.dlq, raw_id)
            elif await self._store.purge(delivery):
                # The host only: some webhook URLs are secrets themselves (Slack's, say).
                log.warning(
                    "dead delivery %s (event %s, host %s) purged after the DLQ retention of %gs",
                    delivery.id,
                    delivery.event_id,
                    urlsplit(delivery.url).hostname,
                    self.policy.retention_s,
                    extra={"delivery_id": delivery.id, "client_id": delivery.owner},
                )
                purged.append(delivery)
        return purged

    async def size(self) -> int:
        return int(await self._store.redis.zcard(self._keys.dlq))

    async def _page(
        self, owner: str | None, where: DlqFilter, limit: int, cursor: int | None
    ) -> list[tuple[Delivery, int]]:
        host = where.host.lower() if where.host else None
        if owner is not None:
            key = self._keys.dlq_owner(owner, host)
        else:
            key = self._keys.dlq if host is None else self._keys.dlq_host(host)
        before = cursor
        if where.until is not None:
            until_us = int(where.until * 1_000_000) + 1
            before = until_us if before is None else min(before, until_us)
        low = None if where.since is None else int(where.since * 1_000_000)
        return await self._store.page(key, limit=limit, before=before, low=low)
