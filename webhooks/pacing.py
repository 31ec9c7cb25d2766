"""Pacing a channel that takes at most one message per interval (a Slack webhook: one a second),
shared by every delivery worker through Redis.

A message that finds the channel busy reserves the next free slot and waits for it without
spending an attempt, so a burst is sent in order of arrival at the channel's rate instead of
racing for each slot.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from webhooks.keys import DEFAULT_PREFIX, Keys
from webhooks.sender import AttemptResult

# KEYS: next free slot, last send, delivery. ARGV: now_ms, interval_ms.
# Returns how many ms the delivery must wait (0: send now). A reserved slot is kept, but never
# comes sooner than an interval after the last send: a late send pushes the rest back.
_RESERVE = """
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local ready = tonumber(redis.call('GET', KEYS[2]) or '0') + interval
local mine = tonumber(redis.call('HGET', KEYS[3], 'pace_slot') or '')
local slot
if mine then
  slot = math.max(mine, ready)
else
  slot = math.max(now, ready, tonumber(redis.call('GET', KEYS[1]) or '0'))
  redis.call('SET', KEYS[1], slot + interval, 'PX', slot + interval - now + 60000)
end
if slot <= now then
  redis.call('SET', KEYS[2], now, 'PX', interval + 60000)
  redis.call('HDEL', KEYS[3], 'pace_slot')
  return 0
end
redis.call('HSET', KEYS[3], 'pace_slot', slot)
return slot - now
"""

# KEYS: last send. ARGV: now_ms, pause_ms, interval_ms. Nothing goes until the pause is over.
_PAUSE = """
local last = tonumber(ARGV[1]) + tonumber(ARGV[2]) - tonumber(ARGV[3])
if last > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], last, 'PX', tonumber(ARGV[2]) + 60000)
end
"""


class Pacer:
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, interval_s: float) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        self._interval_ms = int(interval_s * 1000)
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)

    def _channel(self, url: str) -> list[str]:
        return self._keys.pace(url)

    async def wait_s(self, url: str, delivery_key: str) -> float:
        """0 if the delivery may go now (and it is counted as sent); otherwise how long until
        its reserved slot."""
        wait_ms = await self._reserve(
            keys=[*self._channel(url), delivery_key],
            args=[int(time.time() * 1000), self._interval_ms],
        )
        return int(wait_ms) / 1000

    async def take_slot(self, url: str, holder: str, max_wait_s: float) -> float:
        """Wait here for the channel's next free slot, reserved under `holder` (a key of the
        caller's own, kept at most `max_wait_s` + 60 s). 0 once the slot is taken; when it is more
        than `max_wait_s` away, it is handed back and how far away it was is returned."""
        wait_s = await self.wait_s(url, holder)
        if wait_s > max_wait_s:
            await self._redis.hdel(holder, "pace_slot")  # type: ignore[misc]
            return wait_s
        if wait_s > 0:
            # Gone with the caller if it dies mid-wait; the slot then passes unused.
            await self._redis.expire(holder, int(max_wait_s) + 60)
        while wait_s > 0:
            await asyncio.sleep(wait_s)
            wait_s = await self.wait_s(url, holder)
        return 0.0

    async def answered(self, url: str, result: AttemptResult) -> None:
        """A 429 holds the channel for its Retry-After (a second when it names none)."""
        if result.status_code == 429:
            await self.pause(url, result.retry_after_s or 1.0)

    async def pause(self, url: str, seconds: float) -> None:
        """The channel answered 429: hold everything for it until its Retry-After has passed."""
        await self._pause(
            keys=self._channel(url)[1:],
            args=[int(time.time() * 1000), int(seconds * 1000), self._interval_ms],
        )
