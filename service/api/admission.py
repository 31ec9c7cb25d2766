"""Admission: each client's request rate and its jobs in flight, shared by every API replica.

Rate: a GCRA (generic cell rate algorithm) per client in Redis. One key holds the theoretical
arrival time (TAT): a client may send `burst` requests at once, then one per `1 / rate` seconds.
The script reads Redis `TIME`, so the replicas' own clocks never matter. Every authenticated
request is charged once (by the middleware in service/api/rate_limits.py, which also adds the
`RateLimit-*` headers); an event stream is one request however long it stays open.

In flight: `JobStore` keeps a sorted set of each client's unfinished jobs (batch items
included), adding a job as it is created and removing it in the same transaction that ends it.
`POST /v1/jobs` reserves its job id in that set first, atomically against the quota, so
concurrent requests cannot overshoot it. What a crash leaves behind (a reservation whose job
was never created, a record that expired unfinished) is pruned when a client hits its quota.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from service.clients.store import Client
from service.config import Settings
from service.errors import TooManyRequests
from service.ids import new_id
from service.jobs.model import TERMINAL
from service.keys import KEYS
from service.runtime import Runtime

# KEYS: the client's TAT. ARGV: interval (ms per request), burst.
# Returns {allowed, remaining, retry_after_ms, reset_ms}; reset is when the burst is whole again.
# The TAT is written with pcall: a full Redis (noeviction) refuses the write, and then the
# request goes through uncounted rather than answering 503 to reads that need no write at all.
_CHARGE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local allow_at = tat + interval - burst * interval
if allow_at > now then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
tat = tat + interval
redis.pcall('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now))
local remaining = math.floor((now + burst * interval - tat) / interval + 1e-9)
return {1, remaining, 0, math.ceil(tat - now)}
"""

# KEYS: the client's unfinished jobs. ARGV: quota, job id, created_at, ttl_ms. 1: reserved.
_RESERVE = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

QUOTA_RETRY_AFTER_S = 1  # a hint only: a slot frees whenever one of the client's jobs ends
# A reservation is younger than this while its job is still being stored: never pruned.
_PRUNE_GRACE_S = 60.0
_PRUNE_EVERY_S = 10.0


@dataclass(frozen=True)
class RateDecision:
    """One request charged against its client's rate: what the `RateLimit-*` headers say."""

    allowed: bool
    limit: int  # the burst
    remaining: int
    reset_s: int  # until the whole burst is available again
    retry_after_s: int  # until one more request is allowed; 0 when this one was
    window_s: int  # the time a whole burst takes to earn back
    rate: float  # requests per second, once the burst is spent

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }

    def refusal(self) -> TooManyRequests:
        return TooManyRequests(
            f"more than {self.rate:g} requests per second (bursts of {self.limit}); slow down",
            retry_after_s=self.retry_after_s,
        )


async def admit_request(redis: Redis, settings: Settings, client: Client) -> RateDecision:
    """Charge one request to the client's rate: the decision, whether it is allowed or not."""
    limits = client.limits
    rate = limits.requests_per_s or settings.clients.requests_per_second
    burst = limits.burst or settings.clients.burst
    charge = redis.register_script(_CHARGE)
    allowed, remaining, retry_ms, reset_ms = await charge(
        keys=[KEYS.client_rate(client.id)], args=[1000 / rate, burst]
    )
    return RateDecision(
        allowed=bool(allowed),
        limit=burst,
        remaining=int(remaining),
        reset_s=math.ceil(int(reset_ms) / 1000),
        retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)) if not allowed else 0,
        window_s=max(1, round(burst / rate)),
        rate=rate,
    )


def max_in_flight(runtime: Runtime, client: Client) -> int:
    return client.limits.max_in_flight or runtime.settings.clients.max_in_flight


@asynccontextmanager
async def job_slot(runtime: Runtime, client: Client) -> AsyncIterator[str]:
    """A new job id, holding a place in the client's in-flight quota until the job ends (or at
    once, if the block fails before the job exists). `TooManyRequests` when the quota is full."""
    job_id = new_id("job")
    key = runtime.jobs.unfinished_key(client.id)
    if not await _reserve(runtime, key, client, job_id):
        await _prune(runtime, key)
        if not await _reserve(runtime, key, client, job_id):
            raise _quota_full(runtime, client)
    try:
        yield job_id
    except Exception:
        await runtime.redis.zrem(key, job_id)
        raise


async def require_room(runtime: Runtime, client: Client) -> None:
    """`TooManyRequests` when the client already has its quota of jobs in flight."""
    key = runtime.jobs.unfinished_key(client.id)
    if await runtime.redis.zcard(key) < max_in_flight(runtime, client):
        return
    await _prune(runtime, key)
    if await runtime.redis.zcard(key) >= max_in_flight(runtime, client):
        raise _quota_full(runtime, client)


async def _reserve(runtime: Runtime, key: str, client: Client, job_id: str) -> bool:
    reserve = runtime.redis.register_script(_RESERVE)
    ttl_ms = int(runtime.settings.jobs.retention_s * 1000)
    args: list[int | float | str] = [max_in_flight(runtime, client), job_id, time.time(), ttl_ms]
    return bool(await reserve(keys=[key], args=args))


async def _prune(runtime: Runtime, key: str) -> None:
    """Drop jobs that ended or vanished without `JobStore.transition` seeing them end; at most
    once per `_PRUNE_EVERY_S` per client, as it reads every job held."""
    if not await runtime.redis.set(f"{key}:pruning", "1", px=int(_PRUNE_EVERY_S * 1000), nx=True):
        return
    held = await runtime.redis.zrangebyscore(key, "-inf", time.time() - _PRUNE_GRACE_S)
    stale = []
    for raw in held:
        job = await runtime.jobs.get(raw.decode())
        if job is None or job.status in TERMINAL:
            stale.append(raw)
    if stale:
        await runtime.redis.zrem(key, *stale)


def _quota_full(runtime: Runtime, client: Client) -> TooManyRequests:
    return TooManyRequests(
        f"{max_in_flight(runtime, client)} jobs are queued or running already; "
        "submit more as they finish",
        code="TOO_MANY_JOBS",
        retry_after_s=QUOTA_RETRY_AFTER_S,
    )
