"""`pixhook clients …`: make, list, revoke and rotate the keys and secrets of API clients."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from typing import Any

from service.cli.tables import print_table
from service.clients.store import Client, ClientLimits, ClientRevoked, NewClient, client_store
from service.config import Settings


def redis_url() -> str:
    return Settings.from_env(os.environ).redis.url


def create_client(args: argparse.Namespace) -> int:
    limits = ClientLimits(args.rate, args.burst, args.max_in_flight)

    async def create() -> NewClient:
        async with client_store(redis_url()) as store:
            return await store.create(args.name, limits)

    made = asyncio.run(create())
    record = {
        "id": made.client.id,
        "name": made.client.name,
        "api_key": made.api_key,
        "webhook_secret": made.webhook_secret,
        "limits": asdict(limits),
    }
    if args.json:
        print(json.dumps(record))
    else:
        for key, value in {**record, "limits": _limits_text(limits)}.items():
            print(f"{key:15} {value}")
        print("The API key is shown only now; pixhook keeps only its SHA-256 digest.")
    return 0


def _limits_text(limits: ClientLimits) -> str:
    given = [f"{name}={value:g}" for name, value in asdict(limits).items() if value is not None]
    return " ".join(given) or "the service's defaults"


def list_clients(args: argparse.Namespace) -> int:
    async def listing() -> list[Client]:
        async with client_store(redis_url()) as store:
            return await store.list_clients()

    clients = asyncio.run(listing())
    if args.json:
        print(json.dumps([_client_row(c) for c in clients]))
        return 0
    rows = [
        (c.id, "active" if c.revoked_at is None else "revoked", c.name, _limits_text(c.limits))
        for c in clients
    ]
    print_table(("ID", "STATE", "NAME", "LIMITS"), rows)
    return 0


def _client_row(client: Client) -> dict[str, Any]:
    return {
        "id": client.id,
        "name": client.name,
        "created_at": client.created_at,
        "limits": asdict(client.limits),
        "revoked_at": client.revoked_at,
    }


def revoke_client(args: argparse.Namespace) -> int:
    async def revoke() -> Client | None:
        async with client_store(redis_url()) as store:
            return await store.revoke(args.client_id)

    if asyncio.run(revoke()) is None:
        print(f"pixhook: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.client_id}: its API keys no longer work; queued webhooks still go out")
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    async def rotate() -> str | None:
        async with client_store(redis_url()) as store:
            return await store.rotate_key(args.client_id, args.overlap)

    try:
        api_key = asyncio.run(rotate())
    except ClientRevoked as exc:
        print(f"pixhook: {exc}", file=sys.stderr)
        return 1
    if api_key is None:
        print(f"pixhook: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"api_key  {api_key}")
    previous = f"works for {args.overlap:g}s more" if args.overlap else "no longer works"
    print(f"The API key is shown only now; the previous one {previous}.")
    return 0


def rotate_secret(args: argparse.Namespace) -> int:
    overlap = args.overlap
    if overlap is None:
        overlap = Settings.from_env(os.environ).endpoints.secret_rotation_overlap_s

    async def rotate() -> str | None:
        async with client_store(redis_url()) as store:
            return await store.rotate_secret(args.client_id, overlap)

    secret = asyncio.run(rotate())
    if secret is None:
        print(f"pixhook: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"webhook_secret  {secret}")
    print(f"The previous secret keeps signing (as a second signature) for {overlap:g}s.")
    return 0
