"""`pixhook dlq …`: the dead-letter queue from an operator's shell, across all clients."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from redis.asyncio import Redis

from service.cli.tables import print_table
from service.config import Settings
from service.jobs.views import iso
from webhooks import DeadLetters, Delivery, DeliveryStore, DlqFilter

T = TypeVar("T")


@asynccontextmanager
async def _dead_letters(settings: Settings) -> AsyncIterator[DeadLetters]:
    redis = Redis.from_url(settings.redis.url)
    try:
        yield DeadLetters(DeliveryStore(redis), settings.dlq_policy)
    finally:
        await redis.aclose()


def _run(settings: Settings, action: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _dead_letters(settings) as dead_letters:
            return await action(dead_letters)

    return asyncio.run(main())


def _filter(args: argparse.Namespace) -> DlqFilter:
    return DlqFilter(args.host, args.since, args.until)


def dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    page = _run(settings, lambda d: d.page(args.client, _filter(args), limit=200))
    listed = [d for d in page.deliveries if not args.ids or d.id in args.ids]
    if args.json:
        print(json.dumps([_dead_row(d) for d in listed]))
        return 0
    cells = [(d.id, iso(d.dead_at) or "", d.last_error or "", d.url) for d in listed]
    print_table(("ID", "DEAD AT", "LAST ERROR", "URL"), cells)
    print(f"{len(listed)} dead deliveries" + (" (first 200)" if page.next_cursor else ""))
    return 0


def _dead_row(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "client": d.owner,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "url": d.url,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "dead_at": iso(d.dead_at),
    }


def dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    async def replay(dead_letters: DeadLetters) -> int:
        if args.ids:
            return sum([await dead_letters.replay_one(args.client, i) for i in args.ids])
        return await dead_letters.replay(args.client, _filter(args))

    count = _run(settings, replay)
    print(json.dumps({"requeued": count}) if args.json else f"re-queued {count} dead deliveries")
    return 0


def dlq_purge(settings: Settings, args: argparse.Namespace) -> int:
    async def purge(dead_letters: DeadLetters) -> list[str]:
        return [i for i in args.ids if not await dead_letters.purge(None, i)]

    missing = _run(settings, purge)
    for delivery_id in missing:
        print(f"pixhook: {delivery_id} is not a dead delivery")
    print(f"purged {len(args.ids) - len(missing)} dead deliveries")
    return 1 if missing else 0
