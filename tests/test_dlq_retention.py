"""Dead deliveries leave the DLQ only by replay (asked for, or a bounded auto-redrive), purge, or
the retention — and then loudly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.cli.devstack import EmbeddedRedis
from webhooks.dlq import DeadLetters, DlqFilter, DlqPolicy
from webhooks.outbox import submit
from webhooks.store import Attempt, DeliveryStore


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path).start()
    yield server.url
    server.stop()


async def kill_one(store: DeliveryStore, redrive_limit: int = 0) -> str:
    """The delivery of evt_1 to https://h/, submitted (once) and failed for good."""
    delivery_id = await submit(
        store,
        event_id="evt_1",
        event_type="job.failed",
        owner="cli_1",
        url="https://h/",
        payload=b"{}",
    )
    [claimed] = (await store.claim("token", lease_s=30, limit=1)).deliveries
    attempt = Attempt(1, 0.0, False, 1.0, 500, "HTTP_STATUS", "receiver answered 500", "")
    await store.record(claimed, "token", attempt, "dead", redrive_limit=redrive_limit)
    return delivery_id


def test_retention_purges_old_dead_deliveries_and_logs_each(redis_url, caplog):
    async def main() -> tuple[list[str], int]:
        redis = Redis.from_url(redis_url)
        store = DeliveryStore(redis)
        await kill_one(store)
        purged = await DeadLetters(store, DlqPolicy(retention_s=0)).expire()
        remaining = await DeadLetters(store, DlqPolicy()).size()
        await redis.aclose()
        return [d.id for d in purged], remaining

    with caplog.at_level(logging.WARNING, logger="pixhook.dlq"):
        purged, remaining = asyncio.run(main())

    assert remaining == 0 and len(purged) == 1
    assert f"dead delivery {purged[0]}" in caplog.text and "evt_1" in caplog.text


def test_dead_deliveries_within_retention_stay(redis_url):
    async def main() -> int:
        redis = Redis.from_url(redis_url)
        store = DeliveryStore(redis)
        await kill_one(store)
        dead_letters = DeadLetters(store, DlqPolicy(retention_s=3600))
        await dead_letters.expire()
        page = await dead_letters.page(None, DlqFilter(), limit=10)
        await redis.aclose()
        return len(page.deliveries)

    assert asyncio.run(main()) == 1


def test_a_delivery_is_auto_redriven_at_most_its_limit_then_waits_for_a_replay(redis_url):
    """Issue 15 item 1: a dead delivery was re-sent at every recovery of its host, for ever."""
    # Every recovery may redrive at once: no interval between them.
    policy = DlqPolicy(redrive_interval_s=0.001, redrive_limit=3)

    async def main() -> tuple[list[int], int]:
        redis = Redis.from_url(redis_url)
        store = DeliveryStore(redis)
        dead_letters = DeadLetters(store, policy)
        redriven = []
        for _ in range(4):
            await kill_one(store, redrive_limit=policy.redrive_limit)
            await asyncio.sleep(0.005)  # past the 1 ms gate, which Redis expires on its clock
            redriven.append(await dead_letters.redrive("h:443"))
        replayed = await dead_letters.replay(None, DlqFilter())
        await redis.aclose()
        return redriven, replayed

    redriven, replayed = asyncio.run(main())

    assert redriven == [1, 1, 1, 0]
    assert replayed == 1
