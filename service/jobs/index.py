"""Indexes of jobs by time, for listing them newest first: all jobs, by client, by the
statuses worth finding (queued, running, failed, canceled), and by a client's reference.

Each index is a sorted set of job ids scored by creation time in microseconds, so a page is one
range read from a cursor, however many jobs there are. Filters combine by walking the smallest
matching index and checking the rest on the records, a bounded number of records per page.

Each entry costs Redis about 125 bytes, as much as a small job record's fifth, so only what a
scan could not find cheaply is indexed: a type (there are three, each a large share) and
`succeeded` (most jobs) are found by walking a broader index and checking the records.

A reference (a SKU) is the exception the other way: one key per client and reference, each
holding a handful of jobs, so that `GET /v1/jobs?reference=` is one small read among millions of
jobs, where nothing else could find it but a walk through all of the client's jobs. A job with a
reference costs about 260 bytes more (a key of its own, its expiry and its entry; Redis 7). The
cron that trims the other indexes cannot list these keys, so each trims itself: entries past
retention are dropped as a job is added, and the key expires a retention after its last job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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
    # Any of these; none: every status.
    statuses: tuple[str, ...] = ()
    type: str | None = None
    client_id: str | None = None
    # The reference index is per client: a reference is looked up only with `client_id`.
    reference: str | None = None
    batch_id: str | None = None
    # Created at or after / strictly before (Unix seconds): consecutive ranges share no job.
    created_after: float | None = None
    created_before: float | None = None

    def admits(self, job: Job) -> bool:
        return (
            (not self.statuses or job.status in self.statuses)
            and (self.type is None or job.type == self.type)
            and (self.client_id is None or job.client_id == self.client_id)
            and (self.reference is None or job.reference == self.reference)
            and (self.batch_id is None or job.batch_id == self.batch_id)
        )


@dataclass(frozen=True)
class IndexCursor:
    """Where a page ended: its last record, by creation time (µs) and id. Records created in
    the same microsecond are told apart by id, so a page boundary between them loses none."""

    score: int
    id: str

    def __str__(self) -> str:
        return f"{self.score}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> IndexCursor | None:
        """The cursor `str()` wrote, or None for anything else."""
        match = CURSOR_PATTERN.fullmatch(text)
        return None if match is None else cls(int(match[1]), match[2])


CURSOR_PATTERN = re.compile(r"(-?[0-9]{1,18}):([a-z]{3}_[0-9a-z]{1,40})")
T = TypeVar("T")


async def newest(
    redis: Redis,
    key: str,
    read_many: Callable[[Sequence[str]], Awaitable[list[T | None]]],
    admits: Callable[[T], bool],
    *,
    limit: int,
    chunk: int,
    cursor: IndexCursor | None,
    low: float | None = None,
    ceiling: float | None = None,
) -> tuple[list[T], IndexCursor | None]:
    """Up to `limit` records of the index `key` that `admits`, newest first, after `cursor`,
    created at or after `low` and before `ceiling`; and the cursor to go on from (None: no
    more). At most MAX_SCANNED records are read: a rare match answers with fewer."""
    bottom = "-inf" if low is None else str(_micros(low))
    top = None if ceiling is None else _micros(ceiling)
    position = cursor
    if cursor is not None and top is not None and top <= cursor.score:
        position = None
    if position is None:
        high = "+inf" if top is None else f"({top}"
    else:
        high = str(position.score)
    # `high` is inclusive once a page is under way: the first `skip` entries at it were read.
    found: list[T] = []
    skip, scanned = 0, 0
    while len(found) < limit and scanned < MAX_SCANNED:
        rows = await redis.zrevrangebyscore(
            key, high, bottom, start=skip, num=chunk, withscores=True
        )
        if not rows:
            return found, None
        entries = [(raw.decode(), int(score)) for raw, score in rows]
        last = entries[-1][1]
        at_last = sum(1 for _, score in entries if score == last)
        skip = skip + at_last if high == str(last) else at_last
        high = str(last)
        # Entries at the cursor's own time that sort before it were on the page before.
        if cursor is not None:
            entries = [e for e in entries if (e[1], e[0]) < (cursor.score, cursor.id)]
        records = await read_many([record_id for record_id, _ in entries])
        for (record_id, score), record in zip(entries, records, strict=True):
            scanned += 1
            position = IndexCursor(score, record_id)
            if record is not None and admits(record):
                found.append(record)
                if len(found) == limit:
                    return found, position
        if len(rows) < chunk:
            return found, None
    return found, position


@dataclass(frozen=True)
class JobsFound:
    jobs: list[Job]
    # Pass back to continue; None: nothing older matches.
    next_cursor: IndexCursor | None


def score_of(job: Job) -> int:
    return _micros(job.created_at)


def _micros(moment: float) -> int:
    return int(moment * 1_000_000)


class JobIndex:
    def __init__(self, redis: Redis, prefix: str = PREFIX, *, retention_ms: int = 0) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        # How long a job record lives: what the self-trimming reference keys keep.
        self._retention_ms = retention_ms

    def all_key(self) -> str:
        return self._keys.job_index

    def key(self, kind: str, value: str) -> str:
        return self._keys.job_index_of(kind, value)

    def reference_key(self, client_id: str, reference: str) -> str:
        return self._keys.job_reference_index(client_id, reference)

    def add(self, pipe: Pipeline, job: Job) -> None:
        """Queue the new job's entries on `pipe`."""
        entry = {job.id: score_of(job)}
        pipe.zadd(self.all_key(), entry)
        pipe.zadd(self.key("client", job.client_id), entry)
        if job.status in INDEXED_STATUSES:
            pipe.zadd(self.key("status", job.status), entry)
        if job.reference is not None and self._retention_ms:
            key = self.reference_key(job.client_id, job.reference)
            expired = int((time.time() * 1000 - self._retention_ms) * 1000)
            pipe.zremrangebyscore(key, "-inf", f"({expired}")
            pipe.zadd(key, entry)
            pipe.pexpire(key, self._retention_ms)

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

    def _keys_for(self, where: JobFilter) -> list[tuple[str, bool]]:
        """The indexes that hold every match, each with whether every entry of it matches."""
        # What an index cannot answer is checked on the records: the time range is a score range.
        checked = sum(
            (
                len(where.statuses) > 0,
                where.type is not None,
                where.client_id is not None,
                where.reference is not None,
                where.batch_id is not None,
            )
        )
        keys: list[tuple[str, bool]] = []
        if len(where.statuses) == 1 and where.statuses[0] in INDEXED_STATUSES:
            keys.append((self.key("status", where.statuses[0]), checked == 1))
        if where.client_id is not None and where.reference is not None:
            key = self.reference_key(where.client_id, where.reference)
            keys.append((key, checked == 2))
        elif where.client_id is not None:
            keys.append((self.key("client", where.client_id), checked == 1))
        return keys or [(self.all_key(), checked == 0)]

    async def page(
        self,
        where: JobFilter,
        read_many: Callable[[Sequence[str]], Awaitable[list[Job | None]]],
        *,
        limit: int,
        cursor: IndexCursor | None = None,
    ) -> JobsFound:
        """Newest first, after `cursor` (the last job of the page before)."""
        keys = self._keys_for(where)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, _ in keys:
                pipe.zcard(key)
            sizes = await pipe.execute()
        key, exact = min(zip(sizes, keys, strict=True))[1]
        found, next_cursor = await newest(
            self._redis,
            key,
            read_many,
            where.admits,
            limit=limit,
            # When every entry of the index matches, read no more than is shown.
            chunk=limit if exact else _CHUNK,
            cursor=cursor,
            low=where.created_after,
            ceiling=where.created_before,
        )
        return JobsFound(found, next_cursor)

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
