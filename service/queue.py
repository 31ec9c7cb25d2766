"""The arq connection pieces pixhook shares between API and workers."""

from __future__ import annotations

import json
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from service.keys import JOB_QUEUE

RUN_JOB = "run_job"


def serialize(job: dict[str, Any]) -> bytes:
    """JSON, not arq's default pickle: whoever can write to Redis must not run code on workers."""
    return json.dumps(job, separators=(",", ":")).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


async def connect(redis_url: str) -> ArqRedis:
    """A Redis pool that also enqueues arq jobs, serialized as JSON."""
    return await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=JOB_QUEUE,
    )


def arq_job_id(job_id: str, attempt: int = 1) -> str:
    """The arq id of one attempt at a job: arq refuses an id it still holds, and the attempt
    after a failure is queued while the failed one still runs."""
    return job_id if attempt <= 1 else f"{job_id}:{attempt}"


async def enqueue_job(
    redis: ArqRedis, job_id: str, *, attempt: int = 1, defer_s: float | None = None
) -> None:
    """Queue an attempt at the job, after `defer_s`; queuing the same attempt again is a no-op
    while arq holds it."""
    await redis.enqueue_job(
        RUN_JOB,
        job_id,
        attempt,
        _job_id=arq_job_id(job_id, attempt),
        _queue_name=JOB_QUEUE,
        _defer_by=defer_s or None,
    )
