"""Live event logs of jobs and batches: one Redis stream each, read by the SSE endpoints.

Webhooks carry the events a caller subscribed to; a stream keeps every event of one job or batch
in order, so a caller can watch instead of being called, and resume where it left off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.keys import KEYS

# Enough for a job's status changes and a streamed model reply; older entries are trimmed.
MAX_ENTRIES = 10_000

# KEYS: stream, last sequence. ARGV: sequence, type, data, ttl_s, max entries. The entry id, or
# nil when this sequence (or a later one) is in the stream already: a status published twice
# after a crash is one entry, and a late, older status never lands after a newer one.
_APPEND_ONCE = """
if tonumber(ARGV[1]) <= tonumber(redis.call('GET', KEYS[2]) or '-1') then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], '*', 'type', ARGV[2], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
return id
"""


@dataclass(frozen=True)
class StreamEvent:
    id: str  # the stream entry id, which is also the SSE event id
    type: str
    data: str  # JSON, as appended


def stream_key(owner_id: str) -> str:
    """The stream of a job (`job_…`) or a batch (`bat_…`)."""
    return KEYS.events(owner_id)


async def append_event(
    redis: Redis, owner_id: str, event_type: str, data: dict[str, Any], ttl_s: float
) -> str:
    """Add one event; its stream entry id is the SSE event id a caller resumes from."""
    key = stream_key(owner_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"type": event_type, "data": json.dumps(data)}, maxlen=MAX_ENTRIES)
        pipe.expire(key, int(ttl_s))
        entry_id, _ = await pipe.execute()
    return _text(entry_id)


async def append_once(
    redis: Redis,
    owner_id: str,
    sequence: int,
    event_type: str,
    data: dict[str, Any],
    ttl_s: float,
) -> str | None:
    """Add event number `sequence` unless it or a later one is there; the entry id, or None."""
    append = redis.register_script(_APPEND_ONCE)
    key = stream_key(owner_id)
    entry_id = await append(
        keys=[key, f"{key}:sequence"],
        args=[sequence, event_type, json.dumps(data), max(int(ttl_s), 1), MAX_ENTRIES],
    )
    return None if entry_id is None else _text(entry_id)


async def read_events(
    redis: Redis, owner_id: str, after: str, *, block_s: float | None, count: int = 100
) -> list[StreamEvent]:
    """Up to `count` events after entry id `after`, waiting up to `block_s` if there are none."""
    block = None if block_s is None else max(int(block_s * 1000), 1)
    reply = await redis.xread({stream_key(owner_id): after}, count=count, block=block)
    if not reply:
        return []
    [[_key, entries]] = reply
    return [
        StreamEvent(_text(entry_id), _text(fields[b"type"]), _text(fields[b"data"]))
        for entry_id, fields in entries
    ]


async def last_event_type(redis: Redis, owner_id: str) -> str | None:
    """The type of the newest event in the owner's stream; None when it has none."""
    entries = await redis.xrevrange(stream_key(owner_id), count=1)
    return _text(entries[0][1][b"type"]) if entries else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
