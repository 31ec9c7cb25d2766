"""Provider limits hold across separate Redis connections, as they must across workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.cli.devstack import EmbeddedRedis
from service.config import ConfigError, Settings
from service.providers.limits import LimitPolicy, ProviderLimits

MODEL = "gpt-4o-mini"
OPEN = LimitPolicy(per_minute=60_000, burst=100, concurrency=100, lease_s=10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path).start()
    yield server.url
    server.stop()


@asynccontextmanager
async def workers(
    url: str, policy: LimitPolicy, count: int = 2, model: str = MODEL
) -> AsyncIterator[list[ProviderLimits]]:
    """One limiter per worker, each on its own Redis connection."""
    connections = [Redis.from_url(url) for _ in range(count)]
    try:
        yield [ProviderLimits(redis, "openai", model, policy) for redis in connections]
    finally:
        for connection in connections:
            await connection.aclose()


async def calls_per_worker(url: str, policy: LimitPolicy, workers: int, calls: int) -> list[float]:
    """Each worker has its own connection; returns when each call was let through."""
    started: list[float] = []

    async def worker() -> None:
        redis = Redis.from_url(url)
        limits = ProviderLimits(redis, "openai", MODEL, policy)
        for _ in range(calls):
            async with limits.slot():
                started.append(time.monotonic())
        await redis.aclose()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(started)


async def seconds_to_admit(limits: ProviderLimits, tokens: int = 0) -> float:
    began = time.monotonic()
    async with limits.slot(tokens):
        return time.monotonic() - began


async def refused(limits: ProviderLimits, retry_after_s: float | None = None) -> None:
    """One call that the provider answered with 429."""
    async with limits.slot() as admission:
        await limits.throttled(admission, retry_after_s)


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
                await asyncio.sleep(0.05)  # a call that takes a while: the others queue behind it
                in_flight -= 1

        async with workers(redis_url, policy, count=3) as limiters:
            await asyncio.gather(*(call(limiters[i % 3]) for i in range(9)))

    asyncio.run(main())

    assert peak == 2


def test_a_429_halves_the_rate_for_every_worker(redis_url):
    async def main() -> float:
        async with workers(redis_url, OPEN) as (first, second):
            await refused(first)
            return (await second.state()).factor

    assert asyncio.run(main()) == pytest.approx(0.5, abs=0.01)


def test_a_lowered_rate_spaces_calls_further_apart(redis_url):
    policy = LimitPolicy(per_minute=600, burst=1, concurrency=100, lease_s=10)  # one per 100 ms

    async def main() -> float:
        async with workers(redis_url, policy) as (first, second):
            await refused(first)
            await seconds_to_admit(second)
            return await seconds_to_admit(second)

    assert asyncio.run(main()) >= 0.2 * 0.9  # at half the rate: one per 200 ms


def test_429s_of_calls_sent_before_the_cut_cut_only_once(redis_url):
    """Eight calls refused together are one piece of news about one rate, not eight halvings."""

    async def main() -> float:
        async with workers(redis_url, OPEN) as (first, second):
            async with first.slot() as one, second.slot() as two:
                await first.throttled(one, None)
                await second.throttled(two, None)
            return (await first.state()).factor

    assert asyncio.run(main()) == pytest.approx(0.5, abs=0.01)


def test_the_rate_never_drops_below_the_floor(redis_url):
    policy = replace(OPEN, min_factor=0.2)

    async def main() -> float:
        async with workers(redis_url, policy) as (limits, _):
            for _ in range(6):
                await refused(limits)
            return (await limits.state()).factor

    assert asyncio.run(main()) == pytest.approx(0.2, abs=0.01)


def test_the_rate_recovers_linearly_to_the_configured_one(redis_url):
    policy = replace(OPEN, recovery_s=1)

    async def main() -> tuple[float, float]:
        async with workers(redis_url, policy) as (limits, _):
            await refused(limits)
            # Recovery is measured in Redis TIME (every worker's one clock): real time must pass.
            await asyncio.sleep(0.25)
            halfway = (await limits.state()).factor
            await asyncio.sleep(0.35)
            return halfway, (await limits.state()).factor

    halfway, recovered = asyncio.run(main())

    assert halfway == pytest.approx(0.75, abs=0.05)  # 0.5 + 0.25 s at 1.0 per second
    assert recovered == 1.0


def test_retry_after_pauses_every_worker(redis_url):
    async def main() -> float:
        async with workers(redis_url, OPEN) as (first, second):
            await refused(first, retry_after_s=0.5)
            return await seconds_to_admit(second)

    assert 0.45 <= asyncio.run(main()) < 1.0


def test_a_pause_is_capped(redis_url):
    policy = replace(OPEN, max_pause_s=0.3)

    async def main() -> float:
        async with workers(redis_url, policy) as (first, second):
            await refused(first, retry_after_s=3600)
            return await seconds_to_admit(second)

    assert 0.25 <= asyncio.run(main()) < 1.0


def test_after_a_pause_calls_restart_at_the_steady_rate_without_a_burst(redis_url):
    policy = LimitPolicy(per_minute=600, burst=10, concurrency=100, lease_s=10, recovery_s=0.001)

    async def main() -> list[float]:
        async with workers(redis_url, policy) as (first, second):
            await refused(first, retry_after_s=0.3)
            return [await seconds_to_admit(second) for _ in range(3)]

    pause, *after = asyncio.run(main())

    assert pause >= 0.25
    assert all(wait >= 0.09 for wait in after)  # one per 100 ms, although the burst is 10


def test_token_rate_spaces_calls_by_their_estimated_tokens(redis_url):
    # 12,000 tokens a minute: 200 a second, and a burst of one second's worth.
    policy = replace(OPEN, tokens_per_minute=12_000)

    async def main() -> list[float]:
        async with workers(redis_url, policy) as (limits, _):
            return [await seconds_to_admit(limits, tokens=100) for _ in range(4)]

    waits = asyncio.run(main())

    assert sum(waits[:2]) < 0.1  # the burst
    assert all(0.45 <= wait < 0.7 for wait in waits[2:])  # then 100 tokens every 0.5 s


@pytest.mark.parametrize(("used", "next_wait"), [(1_300, 0.8), (200, 0.0)])
def test_actual_usage_is_settled_against_the_estimate(redis_url, used, next_wait):
    # 60,000 tokens a minute: one a millisecond, and a burst of 1,000.
    policy = replace(OPEN, tokens_per_minute=60_000)

    async def main() -> float:
        async with workers(redis_url, policy) as (first, second):
            async with first.slot(1_000) as admission:
                await first.settle(admission, used)
            return await seconds_to_admit(second, tokens=500)

    # Charged only the estimate, the next call would wait 0.5 s, whatever the call used.
    assert asyncio.run(main()) == pytest.approx(next_wait, abs=0.1)


def test_limits_are_per_model(redis_url):
    async def main() -> tuple[float, float]:
        async with workers(redis_url, OPEN, count=1) as [vision]:
            async with workers(redis_url, OPEN, count=1, model="gpt-image-1") as [images]:
                await refused(vision, retry_after_s=5)
                return (await images.state()).factor, await seconds_to_admit(images)

    factor, wait = asyncio.run(main())

    assert (factor, wait < 0.1) == (1.0, True)


def test_a_worker_with_a_skewed_clock_is_limited_all_the_same(redis_url, monkeypatch):
    """Regression: limits used each worker's clock, so one running ahead was let through early."""
    policy = LimitPolicy(per_minute=60, burst=1, concurrency=100, lease_s=10)  # one per second

    async def main() -> float:
        async with workers(redis_url, policy) as (punctual, ahead):
            await seconds_to_admit(punctual)
            real_time = time.time
            monkeypatch.setattr(time, "time", lambda: real_time() + 30)
            return await seconds_to_admit(ahead)

    assert asyncio.run(main()) >= 0.9


def test_adaptive_limits_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "PIXHOOK_PROVIDER_TOKENS_PER_MINUTE": "150000",
            "PIXHOOK_PROVIDER_MIN_RATE_FACTOR": "0.25",
            "PIXHOOK_PROVIDER_RATE_RECOVERY": "2m",
        }
    )

    assert settings.providers.tokens_per_minute == 150_000
    assert (settings.providers.min_rate_factor, settings.providers.rate_recovery_s) == (0.25, 120)


@pytest.mark.parametrize("factor", ["0", "1.5", "half"])
def test_a_rate_floor_outside_0_to_1_names_its_variable(factor):
    with pytest.raises(ConfigError, match="PIXHOOK_PROVIDER_MIN_RATE_FACTOR"):
        Settings.from_env({"PIXHOOK_PROVIDER_MIN_RATE_FACTOR": factor})
