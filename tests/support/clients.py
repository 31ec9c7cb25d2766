"""API clients made for one test, each with its own key, secret and limits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from service.cli.devstack import RunningStack
from service.clients.store import NewClient, client_store


def client_for(stack: RunningStack, name: str) -> tuple[dict[str, Any], httpx.Client]:
    """A new client of the stack: its record (with key and secret, as `pixhook clients create
    --json` prints it) and an API client for it. Made in-process: a CLI run costs a second of
    imports, and tests/test_cli.py runs the command itself."""

    async def create() -> NewClient:
        async with client_store(stack.redis_url) as store:
            return await store.create(name)

    made = asyncio.run(create())
    record = {
        "id": made.client.id,
        "name": name,
        "api_key": made.api_key,
        "webhook_secret": made.webhook_secret,
    }
    headers = {"authorization": f"Bearer {record['api_key']}"}
    return record, httpx.Client(base_url=stack.api_url, headers=headers, timeout=30)
