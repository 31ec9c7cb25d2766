"""Provider limits shared by every worker through Redis: requests per minute and calls in flight.

The rate is a GCRA (generic cell rate algorithm): one key per provider holding the theoretical
arrival time, so a burst is allowed up to `burst` requests and the long-run rate never exceeds
`per_minute`, however many workers ask.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

# ARGV: now_ms, interval_ms, tolerance_ms. Returns how many ms to wait; 0 means go.
_RATE = """
local now = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or ARGV[1]), now)
local wait = tat - tonumber(ARGV[3]) - now
if wait > 0 then return wait end
local next_tat = tat + tonumber(ARGV[2])
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
return 0
"""

# ARGV: now_ms, lease_ms, limit, holder. Holders whose lease ran out (a dead worker) are dropped.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class LimitPolicy:
    per_minute: float
    burst: int
    concurrency: int
    lease_s: float


class ProviderLimits:
    def __init__(self, redis: Redis, provider: str, policy: LimitPolicy, prefix: str = "pixhook"):
        self._redis = redis
        self._policy = policy
        self._rate_key = f"{prefix}:provider:{provider}:rate"
        self._slots_key = f"{prefix}:provider:{provider}:slots"
        self._rate = redis.register_script(_RATE)
        self._acquire = redis.register_script(_ACQUIRE)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free call slot and for the rate to allow one more request."""
        holder = secrets.token_hex(8)
        await self._wait_for_slot(holder)
        try:
            await self._wait_for_rate()
            yield
        finally:
            await self._redis.zrem(self._slots_key, holder)

    async def _wait_for_slot(self, holder: str) -> None:
        lease_ms = int(self._policy.lease_s * 1000)
        while not await self._acquire(
            keys=[self._slots_key],
            args=[int(time.time() * 1000), lease_ms, self._policy.concurrency, holder],
        ):
            await asyncio.sleep(0.05)

    async def _wait_for_rate(self) -> None:
        interval_ms = 60_000 / self._policy.per_minute
        tolerance_ms = interval_ms * (self._policy.burst - 1)
        while True:
            wait_ms = await self._rate(
                keys=[self._rate_key], args=[int(time.time() * 1000), interval_ms, tolerance_ms]
            )
            if not wait_ms:
                return
            await asyncio.sleep(float(wait_ms) / 1000)
