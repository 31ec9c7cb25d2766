"""Indexes of jobs by time, for listing them newest first: all jobs, by client, and by the
statuses worth finding (queued, running, failed, canceled).

Each index is a sorted set of job ids scored by creation time in microseconds, so a page is one
range read from a cursor, however many jobs there are. Filters combine by walking the smallest
matching index and checking the rest on the records, a bounded number of records per page.

Each entry costs Redis about 125 bytes, as much as a small job record's fifth, so only what a
scan could not find cheaply is indexed: a type (there are three, each a large share) and
`succeeded` (most jobs) are found by walking a broader index and checking the records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from service.jobs.model import Job
from service.keys import PREFIX, Keys

# Records read per page at most: a filter that matches rarely answers with a partial page and a
# cursor to go on from, instead of reading a million records.
MAX_SCANNED = 2000
_CHUNK = 200
INDEXED_STATUSES = frozenset({"queued", "running", "failed", "canceled"})


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    type: str | None = None
    client_id: str | None = None

    def admits(self, job: Job) -> bool:
        return (
            (self.status is None or job.status == self.status)
            and (self.type is None or job.type == self.type)
            and (self.client_id is None or job.client_id == self.client_id)
        )


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    # Pass back to continue; None: nothing older matches.
    next_cursor: int | None


def score_of(job: Job) -> int:
    return int(job.created_at * 1_000_000)


class JobIndex:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._keys = Keys(prefix)

    def all_key(self) -> str:
        return self._keys.job_index

    def key(self, kind: str, value: str) -> str:
        return self._keys.job_index_of(kind, value)

    def add(self, pipe: Pipeline, job: Job) -> None:
        """Queue the new job's entries on `pipe`."""
        entry = {job.id: score_of(job)}
        pipe.zadd(self.all_key(), entry)
        pipe.zadd(self.key("client", job.client_id), entry)
        if job.status in INDEXED_STATUSES:
            pipe.zadd(self.key("status", job.status), entry)

    def moved(self, pipe: Pipeline, before: Job, after: Job) -> None:
        """Queue a status change on `pipe` (the transaction that makes it)."""
        if before.status == after.status:
            return
        if before.status in INDEXED_STATUSES:
            pipe.zrem(self.key("status", before.status), after.id)
        if after.status in INDEXED_STATUSES:
            pipe.zadd(self.key("status", after.status), {after.id: score_of(after)})

    async def count(self, statuses: Sequence[str]) -> int:
        """How many jobs of every client are in one of `statuses` (indexed ones)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in statuses:
                pipe.zcard(self.key("status", status))
            sizes = await pipe.execute()
        return sum(sizes)

    def _keys_for(self, where: JobFilter) -> tuple[list[str], bool]:
        """The indexes that hold every match, and whether every entry of any of them matches."""
        keys, unchecked = [], where.type is not None
        if where.status in INDEXED_STATUSES:
            keys.append(self.key("status", where.status))
        elif where.status is not None:
            unchecked = True
        if where.client_id is not None:
            keys.append(self.key("client", where.client_id))
        return keys or [self.all_key()], len(keys) <= 1 and not unchecked

    async def page(
        self,
        where: JobFilter,
        read_many: Callable[[Sequence[str]], Awaitable[list[Job | None]]],
        *,
        limit: int,
        cursor: int | None = None,
    ) -> JobPage:
        """Newest first, older than `cursor`."""
        keys, exact = self._keys_for(where)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            sizes = await pipe.execute()
        key = min(zip(sizes, keys, strict=True))[1]
        # When every entry of the index matches, read no more than is shown.
        chunk = limit if exact else _CHUNK
        found: list[Job] = []
        before, scanned = cursor, 0
        while len(found) < limit and scanned < MAX_SCANNED:
            high = "+inf" if before is None else f"({before}"
            rows = await self._redis.zrevrangebyscore(
                key, high, "-inf", start=0, num=chunk, withscores=True
            )
            if not rows:
                return JobPage(found, None)
            jobs = await read_many([raw.decode() for raw, _ in rows])
            for (_, score), job in zip(rows, jobs, strict=True):
                scanned += 1
                before = int(score)
                if job is not None and where.admits(job):
                    found.append(job)
                    if len(found) == limit:
                        break
            if len(rows) < chunk and len(found) < limit:
                return JobPage(found, None)
        return JobPage(found, before)

    async def trim(
        self,
        older_than: float,
        *,
        clients: Sequence[str],
    ) -> None:
        """Drop entries of jobs past their retention (their records have expired)."""
        keys = [self.all_key()]
        keys += [self.key("status", s) for s in sorted(INDEXED_STATUSES)]
        keys += [self.key("client", c) for c in clients]
        cutoff = f"({int(older_than * 1_000_000)}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zremrangebyscore(key, "-inf", cutoff)
            await pipe.execute()
