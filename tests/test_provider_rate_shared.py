"""Worker processes share one provider rate through Redis: the stand-in provider counts what
reaches it in each one-second window, and refuses (429, Retry-After) what exceeds its limit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from service.cli.devstack import EmbeddedRedis
from service.config import Settings
from service.providers.key_pool import api_key
from service.providers.limits import LimitPolicy, ProviderLimits
from tests.support.openai_standin import API_KEY, OpenAIStandIn, Window

ROOT = Path(__file__).resolve().parent.parent
MODEL = Settings().providers.openai_vision_model


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path).start()
    yield server.url
    server.stop()


def run_workers(
    redis_url: str,
    standin: OpenAIStandIn,
    provider_limit: int,
    env: dict[str, str],
    calls: int,
    processes: int = 2,
    retry_after: bool = True,
    limit_headers: bool = True,
) -> tuple[list[dict[str, Any]], list[Window]]:
    """Each process makes `calls` calls, 4 at a time, all starting together; returns what each
    process reports and the requests the provider counted per window."""
    worker_env = {
        **os.environ,
        "PIXHOOK_REDIS_URL": redis_url,
        "PIXHOOK_OPENAI_BASE_URL": standin.base_url,
        "PIXHOOK_OPENAI_API_KEY": API_KEY,
        "PIXHOOK_PROVIDER_BACKOFF": "50ms",
        "PIXHOOK_PROVIDER_BURST": "1",
        **env,
    }
    command = [sys.executable, "-m", "tests.support.rate_window", str(calls), "4"]
    started = [
        subprocess.Popen(
            command,
            env=worker_env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for process in started:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        standin.count_requests(
            1.0, provider_limit, retry_after=retry_after, limit_headers=limit_headers
        )
        for process in started:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = [json.loads(process.communicate(timeout=60)[0]) for process in started]
        return reports, standin.window_counts()
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        standin.count_requests()  # counted, but no longer limited


def rate_factor(redis_url: str) -> float:
    async def read() -> float:
        policy = LimitPolicy(per_minute=1, burst=1, concurrency=1, lease_s=1)
        connection = Redis.from_url(redis_url)
        try:
            key_id = api_key(API_KEY).id  # the limits a key's calls share
            limits = ProviderLimits(connection, "openai", MODEL, policy, key_id=key_id)
            return (await limits.state()).factor
        finally:
            await connection.aclose()

    return asyncio.run(read())


def test_two_worker_processes_together_stay_within_the_configured_rate(redis_url, openai_standin):
    # 1,200 requests a minute, configured in both workers and enforced by the provider: 20 per
    # window. Tolerance: 10% (22), for loopback jitter between admission and arrival.
    env = {"PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": "1200"}

    results, windows = run_workers(redis_url, openai_standin, 1200, env, calls=40)

    print("per window:", [(w.arrived, w.refused) for w in windows])
    assert max(r["started_at"] for r in results) < min(r["finished_at"] for r in results) - 2
    assert [r["succeeded"] for r in results] == [40, 40]
    assert [r["failed"] for r in results] == [{}, {}]
    assert sum(w.arrived for w in windows) >= 80
    assert max(w.arrived for w in windows) <= 22
    assert sum(w.arrived for w in windows[1:-1]) <= 20 * len(windows[1:-1]) * 1.05


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
def test_workers_slow_down_together_when_the_provider_allows_less(
    redis_url, openai_standin, retry_after
):
    # Configured for 1,200 a minute; the provider allows 600 (10 per window) and, as behind some
    # proxies, says nothing of its window but the 429. Without the shared factor, about half the
    # requests would be refused, and some calls would run out of attempts.
    env = {
        "PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": "1200",
        "PIXHOOK_PROVIDER_RATE_RECOVERY": "10s",
    }

    results, windows = run_workers(
        redis_url, openai_standin, 600, env, calls=25, retry_after=retry_after, limit_headers=False
    )

    arrived, refused = sum(w.arrived for w in windows), sum(w.refused for w in windows)
    print("per window:", [(w.arrived, w.refused) for w in windows])
    assert [r["failed"] for r in results] == [{}, {}]  # every 429 was waited out, none failed
    assert sum(r["succeeded"] for r in results) == 50
    assert refused <= 0.2 * arrived
    assert rate_factor(redis_url) < 1.0


def test_the_providers_limit_headers_keep_workers_under_its_limit_without_a_429(
    redis_url, openai_standin
):
    # The same provider, saying in every reply what is left of the key's window: the workers
    # wait for its reset instead of being refused.
    env = {"PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": "1200"}

    results, windows = run_workers(redis_url, openai_standin, 600, env, calls=25)

    print("per window:", [(w.arrived, w.refused) for w in windows])
    assert [r["failed"] for r in results] == [{}, {}]
    assert sum(r["succeeded"] for r in results) == 50
    assert sum(w.refused for w in windows) == 0
    assert max(w.arrived for w in windows) <= 10
    assert rate_factor(redis_url) == 1.0
