"""Identical work in flight at once is done once: the first job to ask takes a lease in Redis and
does it; the others wait for its answer in the cache, and take over if it dies.

The lease is `SET NX PX`: a holder renews it while it works, so a crashed holder (a worker
killed, its machine gone) stops renewing and the lease lapses within `lease_s`; a waiter then
finds no answer and no lease, and takes its own. A holder that fails (a provider error) lets go
at once and the next waiter tries in its turn: an error is not shared, an answer is.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

T = TypeVar("T")

# Waiters look for the answer often at first (most answers come in a second or two), then less.
FIRST_POLL_S = 0.02
MAX_POLL_S = 0.5

# Renews (or frees) the lease only while it is still ours: a holder whose lease lapsed must not
# extend or delete the lease a waiter has since taken over.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class SingleFlight:
    """One piece of work named by `lease_key`, whose answer `lookup` finds once done."""

    def __init__(self, redis: Redis, lease_key: str, lease_s: float) -> None:
        self._redis = redis
        self._key = lease_key
        self._lease_ms = max(1, int(lease_s * 1000))
        self._token = secrets.token_hex(16)
        self._renew_script = redis.register_script(_RENEW)
        self._release_script = redis.register_script(_RELEASE)

    async def run(
        self, lookup: Callable[[], Awaitable[T | None]], compute: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """The answer, and whether it was computed here (`compute` stores it where `lookup`
        finds it). Waits as long as a live holder works: the job's own timeout bounds that."""
        poll_s = FIRST_POLL_S
        while True:
            found = await lookup()
            if found is not None:
                return found, False
            if await self._redis.set(self._key, self._token, nx=True, px=self._lease_ms):
                return await self._hold(lookup, compute)
            await asyncio.sleep(poll_s)
            poll_s = min(MAX_POLL_S, poll_s * 2)

    async def _hold(
        self, lookup: Callable[[], Awaitable[T | None]], compute: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        renewing = asyncio.create_task(self._renew())
        try:
            # A holder may have stored its answer and let go between our look and our lease.
            found = await lookup()
            return (found, False) if found is not None else (await compute(), True)
        finally:
            renewing.cancel()
            # A renewal that failed (Redis gone a moment) costs only the lease's length.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewing
            # Shielded: a job cancelled mid-call still lets its waiters go at once.
            await asyncio.shield(self._release_script(keys=[self._key], args=[self._token]))

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            await self._renew_script(keys=[self._key], args=[self._token, self._lease_ms])
