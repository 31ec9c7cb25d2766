"""`pixhook providers …`: the providers' API keys from an operator's shell: which are in
rotation, a check of each with a cheap authenticated call, and putting refused keys back."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from service.batches.pausing import resume_batches_paused_for_keys
from service.cli.tables import print_table
from service.config import Settings
from service.jobs.views import iso
from service.providers.calls import ProviderCalls
from service.providers.errors import ProviderError
from service.providers.key_checks import configured_providers
from service.providers.key_pool import KeyPool
from service.providers.openai import provider_http
from service.runtime import Runtime

T = TypeVar("T")


def _run(settings: Settings, action: Callable[[Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        redis = Redis.from_url(settings.redis.url)
        try:
            return await action(redis)
        finally:
            await redis.aclose()

    return asyncio.run(main())


def _configured(settings: Settings, only: str | None) -> list[str]:
    return [name for name in configured_providers(settings) if only in (None, name)]


def keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def states(redis: Redis) -> list[dict[str, object]]:
        rows = []
        for name in _configured(settings, args.provider):
            for state in await KeyPool.of(settings, redis, name).states():
                rows.append({"provider": name} | state.view())
        return rows

    rows = _run(settings, states)
    if args.json:
        print(json.dumps(rows))
        return 0
    cells = [
        (
            str(row["provider"]),
            str(row["hint"]),
            "in rotation" if row["in_rotation"] else f"out ({row['status']})",
            iso(row["out_since"]) or "",  # type: ignore[arg-type]
        )
        for row in rows
    ]
    print_table(("PROVIDER", "KEY", "STATE", "OUT SINCE"), cells)
    return 0


def keys_check(settings: Settings, args: argparse.Namespace) -> int:
    """Each key in rotation tried now; 1 when any was refused."""

    async def check(redis: Redis) -> list[tuple[str, str, ProviderError | None]]:
        async with provider_http() as http:
            calls = ProviderCalls(settings, redis, http)
            return [
                (name, key.hint, error)
                for name in _configured(settings, args.provider)
                for key, error in await calls.check_keys(name)
            ]

    results = _run(settings, check)
    for name, hint, error in results:
        print(f"{name} …{hint}: " + ("ok" if error is None else f"{error.code}: {error}"))
    return 1 if any(error is not None for _, _, error in results) else 0


def keys_reinstate(settings: Settings, args: argparse.Namespace) -> int:
    """Puts keys back, then resumes the batches paused because the provider had none."""

    async def reinstate() -> tuple[list[str], list[str]]:
        runtime = await Runtime.open(settings)
        try:
            pool = KeyPool.of(settings, runtime.redis, args.provider)
            hints = await pool.put_back(args.key)
            resumed = await resume_batches_paused_for_keys(runtime, args.provider) if hints else []
            return hints, resumed
        finally:
            await runtime.close()

    hints, resumed = asyncio.run(reinstate())
    if not hints:
        print(f"no {args.provider} key ends in {args.key!r}")
        return 1
    print(f"{args.provider} keys back in rotation: " + ", ".join(f"…{h}" for h in hints))
    if resumed:
        print("batches resumed: " + ", ".join(resumed))
    return 0
