"""Live event logs of jobs and batches: one Redis stream each, read by the SSE endpoints.

Webhooks carry the events a caller subscribed to; a stream keeps every event of one job or batch
in order, so a caller can watch instead of being called, and resume where it left off.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

# Enough for a job's status changes and a streamed model reply; older entries are trimmed.
MAX_ENTRIES = 10_000


def stream_key(owner_id: str) -> str:
    """The stream of a job (`job_…`) or a batch (`bat_…`)."""
    return f"pixhook:events:{owner_id}"


async def append_event(
    redis: Redis, owner_id: str, event_type: str, data: dict[str, Any], ttl_s: float
) -> str:
    """Add one event; its stream entry id is the SSE event id a caller resumes from."""
    key = stream_key(owner_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"type": event_type, "data": json.dumps(data)}, maxlen=MAX_ENTRIES)
        pipe.expire(key, int(ttl_s))
        entry_id, _ = await pipe.execute()
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
