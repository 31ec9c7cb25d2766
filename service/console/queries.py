"""What the console's pages show, read from the stores the API and workers keep: each read bounded,
so a page costs the same with a thousand jobs or a million."""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.clients.store import Client
from service.keys import PREFIX
from service.runtime import Runtime
from webhooks import Delivery, DeliveryStatus, DlqFilter, Endpoint, recent_history

HISTORY_MINUTES = 60
# The endpoints list shows each one's success over its last attempts: enough to tell a failing
# endpoint, cheap enough for fifty of them.
ENDPOINT_SAMPLES = 100
# Records read per page at most when a filter has no index of its own (a host on pending or
# succeeded deliveries): a rare match answers with a partial page and a cursor to go on from.
MAX_SCANNED = 2000


@dataclass(frozen=True)
class Minute:
    jobs_ended: int
    jobs_failed: int
    attempts_ok: int
    attempts_failed: int


@dataclass(frozen=True)
class Overview:
    minutes: list[Minute]  # oldest first, the current minute last
    jobs_per_s: float
    attempts_per_s: float
    success_rate: float | None  # of the last hour's attempts
    dlq_size: int
    jobs_queued: int
    deliveries_due: int
    deliveries_pending: int
    open_circuits: int


@dataclass(frozen=True)
class Page:
    deliveries: list[Delivery]
    next_cursor: int | None


async def overview(rt: Runtime, client_id: str | None) -> Overview:
    """The last hour in numbers: the operator's for everyone, a client's for itself."""
    suffix = "" if client_id is None else f"|{client_id}"
    history = await recent_history(rt.redis, PREFIX, HISTORY_MINUTES)
    minutes = [
        Minute(
            jobs_ended=sum(row.get(f"jobs|{s}{suffix}", 0) for s in ("succeeded", "failed"))
            + row.get(f"jobs|canceled{suffix}", 0),
            jobs_failed=row.get(f"jobs|failed{suffix}", 0),
            attempts_ok=row.get(f"attempts|ok{suffix}", 0),
            attempts_failed=row.get(f"attempts|failed{suffix}", 0),
        )
        for row in history
    ]
    # The last five whole minutes and as much of the current one as has passed.
    recent = minutes[-6:]
    window_s = 300 + time.time() % 60
    attempts = sum(m.attempts_ok + m.attempts_failed for m in minutes)
    keys = rt.deliveries.keys
    async with rt.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.dlq if client_id is None else keys.dlq_owner(client_id))
        if client_id is not None:
            pipe.zcard(rt.jobs.unfinished_key(client_id))
            pipe.zcard(keys.by_status(client_id, "pending"))
        dlq_size, *owner_counts = await pipe.execute()
    due, pending = await rt.deliveries.due_count()
    if client_id is None:
        # As `pixhook_jobs_queued` counts them: arq's queue also holds the worker's cron entries.
        jobs_queued = await rt.jobs.index.count(("queued", "running"))
    else:
        (jobs_queued, pending), due = owner_counts, 0
    return Overview(
        minutes=minutes,
        jobs_per_s=sum(m.jobs_ended for m in recent) / window_s,
        attempts_per_s=sum(m.attempts_ok + m.attempts_failed for m in recent) / window_s,
        success_rate=sum(m.attempts_ok for m in minutes) / attempts if attempts else None,
        dlq_size=int(dlq_size),
        jobs_queued=int(jobs_queued),
        deliveries_due=due,
        deliveries_pending=int(pending),
        open_circuits=await rt.circuits.open_count(),
    )


async def deliveries(
    rt: Runtime,
    owners: Sequence[str],
    status: DeliveryStatus,
    *,
    host: str | None,
    limit: int,
    cursor: int | None,
) -> Page:
    """Newest first across `owners`' indexes of `status`, optionally to one host."""
    if status == "dead" and host is not None:
        # The dead-letter queue has indexes by host of its own.
        owner = owners[0] if len(owners) == 1 else None
        dead = await rt.dead_letters.page(owner, DlqFilter(host), limit=limit, cursor=cursor)
        return Page(dead.deliveries, dead.next_cursor)
    keys = [rt.deliveries.keys.by_status(owner, status) for owner in owners]
    found: list[Delivery] = []
    before, scanned = cursor, 0
    while len(found) < limit and scanned < MAX_SCANNED:
        rows = await _newest(rt, keys, before, limit)
        if not rows:
            return Page(found, None)
        for (_, score), delivery in zip(
            rows, await rt.deliveries.get_many([r[0] for r in rows]), strict=True
        ):
            scanned += 1
            before = score
            if delivery is not None and (host is None or delivery.host == host):
                found.append(delivery)
                if len(found) == limit:
                    return Page(found, before)
        if len(rows) < limit:
            return Page(found, None)
    return Page(found, before)


async def _newest(
    rt: Runtime, keys: Sequence[str], before: int | None, limit: int
) -> list[tuple[str, int]]:
    """The `limit` newest (id, score) pairs of all `keys` together, scored below `before`."""
    high = "+inf" if before is None else f"({before}"
    async with rt.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrevrangebyscore(key, high, "-inf", start=0, num=limit, withscores=True)
        per_key = await pipe.execute()
    merged = heapq.merge(
        *[[(raw.decode(), int(score)) for raw, score in rows] for rows in per_key],
        key=lambda row: row[1],
        reverse=True,
    )
    return [row for _, row in zip(range(limit), merged, strict=False)]


async def clients_in_view(rt: Runtime, client_id: str | None) -> list[Client]:
    clients = await rt.clients.list_clients()
    return [c for c in clients if client_id is None or c.id == client_id]


async def endpoints(rt: Runtime, owners: Sequence[str]) -> list[tuple[Endpoint, dict[str, Any]]]:
    """Each endpoint with the health figures the list shows (over its last 100 attempts)."""
    found = []
    for owner in owners:
        for endpoint in await rt.endpoints.owned_by(owner):
            health = await rt.endpoints.health(endpoint.id, samples=ENDPOINT_SAMPLES)
            figures = {
                "attempts": health.attempts,
                "success_rate": health.recent_success_rate,
                "failing_since": health.failing_since,
                "last_failure": health.last_failure,
            }
            found.append((endpoint, figures))
    return found
