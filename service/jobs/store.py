"""Job records in Redis and the only place their status changes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from service.ids import is_id
from service.jobs.index import IndexCursor, JobFilter, JobIndex, JobsFound
from service.jobs.metrics import JobMetrics
from service.jobs.model import TERMINAL, Job, JobStatus
from service.jobs.usage_totals import UsageTotals
from service.keys import PREFIX, Keys

# Back to `queued` is a new attempt: from `running` when a transient failure is retried on its own,
# from `failed` or `canceled` when a caller asks (service/lifecycle.py, `requeue_job`).
_ALLOWED: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "canceled"}),
    "running": frozenset({"succeeded", "failed", "canceled", "queued"}),
    "failed": frozenset({"queued"}),
    "canceled": frozenset({"queued"}),
}


class JobStore:
    def __init__(self, redis: Redis, *, retention_s: float, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._retention_ms = int(retention_s * 1000)
        self._keys = Keys(prefix)
        self._metrics = JobMetrics(redis, prefix)
        self.usage = UsageTotals(redis, prefix)
        self.index = JobIndex(redis, prefix, retention_ms=self._retention_ms)

    def _key(self, job_id: str) -> str:
        return self._keys.job(job_id)

    def deliveries_key(self, job_id: str) -> str:
        return self._keys.job_deliveries(job_id)

    def unfinished_key(self, client_id: str) -> str:
        """A sorted set of the client's jobs not yet ended (id -> created_at): its in-flight
        quota (service/api/admission.py). `transition` removes a job as it ends."""
        return self._keys.unfinished_jobs(client_id)

    async def create(self, job: Job) -> bool:
        """Store a new job; False (and nothing changes) when a job with its id exists already."""
        created = await self._redis.set(
            self._key(job.id), job.to_json(), px=self._retention_ms, nx=True
        )
        if created:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self.unfinished_key(job.client_id), {job.id: job.created_at}, nx=True)
                pipe.pexpire(self.unfinished_key(job.client_id), self._retention_ms)
                self.index.add(pipe, job)
                await pipe.execute()
        return bool(created)

    async def get(self, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        raw = await self._redis.get(self._key(job_id))
        return Job.from_json(raw) if raw else None

    async def get_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Several jobs in one round trip; None where one has expired."""
        if not job_ids:
            return []
        raws = await self._redis.mget([self._key(job_id) for job_id in job_ids])
        return [Job.from_json(raw) if raw else None for raw in raws]

    async def page(
        self, where: JobFilter, *, limit: int, cursor: IndexCursor | None = None
    ) -> JobsFound:
        """Newest first, matching `where`, after `cursor` (where the page before ended)."""
        return await self.index.page(where, self.get_many, limit=limit, cursor=cursor)

    async def transition(self, job_id: str, status: JobStatus, **changes: Any) -> Job | None:
        """Move a job to `status` if its current status allows it; None when it does not.

        Each transition is a new event, so it takes the next `sequence` number.
        """
        key = self._key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return None
                    job = Job.from_json(raw)
                    if status not in _ALLOWED.get(job.status, frozenset()):
                        return None
                    updates: dict[str, Any] = {**_timestamps(status), **changes}
                    updated = replace(job, status=status, sequence=job.sequence + 1, **updates)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, updated.to_json(), keepttl=True)
                    if status in TERMINAL:
                        pipe.zrem(self.unfinished_key(job.client_id), job_id)
                        self.usage.count(pipe, updated)
                    elif job.status in TERMINAL:  # tried again: it counts against the quota
                        pipe.zadd(self.unfinished_key(job.client_id), {job_id: job.created_at})
                    self.index.moved(pipe, job, updated)
                    # In the transaction: a change is counted exactly once, whoever makes it.
                    await self._metrics.transitioned(job, updated, client=pipe)
                    await pipe.execute()
                    return updated
                except WatchError:
                    continue

    async def add_delivery(self, job_id: str, delivery_id: str) -> None:
        key = self.deliveries_key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, delivery_id)
            pipe.pexpire(key, self._retention_ms)
            await pipe.execute()

    async def delivery_ids(self, job_id: str) -> list[str]:
        ids = await self._redis.smembers(self.deliveries_key(job_id))  # type: ignore[misc]
        return sorted(i.decode() for i in ids)


def _timestamps(status: JobStatus) -> dict[str, float]:
    if status == "running":
        return {"started_at": time.time()}
    if status in TERMINAL:
        return {"finished_at": time.time()}
    return {}
