"""Provider limits hold across separate Redis connections, as they must across workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.devstack import EmbeddedRedis
from service.providers.limits import LimitPolicy, ProviderLimits


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path).start()
    yield server.url
    server.stop()


async def calls_per_worker(url: str, policy: LimitPolicy, workers: int, calls: int) -> list[float]:
    """Each worker has its own connection; returns when each call was let through."""
    started: list[float] = []

    async def worker() -> None:
        redis = Redis.from_url(url)
        limits = ProviderLimits(redis, "openai", policy)
        for _ in range(calls):
            async with limits.slot():
                started.append(time.monotonic())
        await redis.aclose()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(started)


def test_rate_is_shared_by_all_workers(redis_url):
    policy = LimitPolicy(per_minute=600, burst=1, concurrency=100, lease_s=10)  # one per 100 ms

    started = asyncio.run(calls_per_worker(redis_url, policy, workers=3, calls=4))

    span = started[-1] - started[0]
    assert len(started) == 12
    assert span >= 11 * 0.1 * 0.9  # 12 calls at 10/s need at least 1.1 s, whoever makes them


def test_burst_is_let_through_at_once(redis_url):
    policy = LimitPolicy(per_minute=60, burst=5, concurrency=100, lease_s=10)

    started = asyncio.run(calls_per_worker(redis_url, policy, workers=5, calls=1))

    assert started[-1] - started[0] < 0.5


def test_calls_in_flight_never_exceed_the_concurrency(redis_url):
    policy = LimitPolicy(per_minute=60_000, burst=100, concurrency=2, lease_s=10)
    in_flight, peak = 0, 0

    async def main() -> None:
        async def call(limits: ProviderLimits) -> None:
            nonlocal in_flight, peak
            async with limits.slot():
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.05)
                in_flight -= 1

        connections = [Redis.from_url(redis_url) for _ in range(3)]
        limiters = [ProviderLimits(r, "openai", policy) for r in connections]
        await asyncio.gather(*(call(limiters[i % 3]) for i in range(9)))
        for connection in connections:
            await connection.aclose()

    asyncio.run(main())

    assert peak == 2
