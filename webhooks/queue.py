"""The arq queue that carries delivery attempts. Jobs carry ids only; state lives in `store`."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis

DELIVERY_QUEUE = "pixhook:queue:deliveries"
ATTEMPT_FUNCTION = "deliver_attempt"


def serialize(job: dict[str, Any]) -> bytes:
    """JSON, not arq's default pickle: whoever can write to Redis must not run code on workers."""
    return json.dumps(job, separators=(",", ":")).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


async def enqueue_attempt(
    redis: ArqRedis, delivery_id: str, attempt: int, defer_s: float = 0.0
) -> None:
    """One arq job per attempt, so a schedule spanning days never outlives an arq job key."""
    await redis.enqueue_job(
        ATTEMPT_FUNCTION,
        delivery_id,
        attempt,
        _job_id=f"{delivery_id}:{attempt}",
        _queue_name=DELIVERY_QUEUE,
        _defer_by=defer_s or None,
    )
