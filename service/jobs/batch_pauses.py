"""A batch paused and resumed. While `paused` no item starts (claims need `running`); items in
flight finish and are recorded as usual, and a cancel ends it as it would a running batch.

It pauses for its `budget` (the record script of batch_store.py, when an item's cost brings
the total to `max_cost`), or for `keys`: an item whose provider refused every key is put back
(`{p}:retry`, claimed first on resume) rather than recorded as failed, and the batch pauses.
"""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

from service.jobs.usage_totals import cost_units
from service.keys import PREFIX, Keys

PutBack = Literal["paused", "put_back", "record", "recorded"]
Resumed = Literal["resumed", "not_paused", "budget_reached"]

# KEYS: hash, done, inflight, retry. ARGV: index, provider, now.
_PUT_BACK = """
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 'recorded' end
local h = redis.call('HMGET', KEYS[1], 'status', 'cancel')
if h[2] == '1' or (h[1] ~= 'running' and h[1] ~= 'paused') then return 'record' end
if redis.call('SREM', KEYS[3], ARGV[1]) == 0 then return 'recorded' end
redis.call('RPUSH', KEYS[4], ARGV[1])
if h[1] ~= 'running' then return 'put_back' end
redis.call('HSET', KEYS[1], 'status', 'paused', 'paused_reason', 'keys',
           'paused_provider', ARGV[2], 'paused_at', ARGV[3])
return 'paused'
"""

# KEYS: hash. ARGV: a new max_cost (cost units) or '', and the reason it must be paused for
# ('' for any).
_RESUME = """
local h = redis.call('HMGET', KEYS[1], 'status', 'cancel', 'max_cost', 'cost', 'paused_reason')
if h[1] ~= 'paused' or h[2] == '1' then return 'not_paused' end
if ARGV[2] ~= '' and h[5] ~= ARGV[2] then return 'not_paused' end
local budget = h[3]
if ARGV[1] ~= '' then budget = ARGV[1] end
if budget and tonumber(h[4] or 0) >= tonumber(budget) then return 'budget_reached' end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'max_cost', ARGV[1]) end
redis.call('HSET', KEYS[1], 'status', 'running')
redis.call('HDEL', KEYS[1], 'paused_reason', 'paused_at', 'paused_provider')
return 'resumed'
"""


class BatchPauses:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self._keys = Keys(prefix)
        self._put_back = redis.register_script(_PUT_BACK)
        self._resume = redis.register_script(_RESUME)

    async def put_back(self, batch_id: str, index: int, provider: str, now: float) -> PutBack:
        """An item whose provider refused every key: back in line, and the batch paused
        (`paused`: by this call). `record`: the batch is ending, record the item's end as usual;
        `recorded`: this end was seen before."""
        parts = ("", "done", "inflight", "retry")
        keys = [self._keys.batch(batch_id, part) for part in parts]
        found = await self._put_back(keys=keys, args=[index, provider, now])
        return found.decode()  # type: ignore[no-any-return]

    async def resume(
        self, batch_id: str, max_cost: float | None = None, *, reason: str = ""
    ) -> Resumed:
        """Run the paused batch again (with a new `max_cost`, if given): refused while its
        budget is reached; with `reason`, only a batch paused for it."""
        budget = "" if max_cost is None else str(cost_units(max_cost))
        found = await self._resume(keys=[self._keys.batch(batch_id)], args=[budget, reason])
        return found.decode()  # type: ignore[no-any-return]
