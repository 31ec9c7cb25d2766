"""The arq connection pieces pixhook shares between API and workers."""

from __future__ import annotations

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from webhooks.queue import deserialize, serialize

JOB_QUEUE = "pixhook:queue:jobs"
RUN_JOB = "run_job"


async def connect(redis_url: str) -> ArqRedis:
    """A Redis pool that also enqueues arq jobs, serialized as JSON."""
    return await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=JOB_QUEUE,
    )


async def enqueue_job(redis: ArqRedis, job_id: str) -> None:
    await redis.enqueue_job(RUN_JOB, job_id, _job_id=job_id, _queue_name=JOB_QUEUE)
