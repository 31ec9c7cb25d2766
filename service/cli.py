"""The `pixhook` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from service.clients import Client, NewClient, client_store
from service.config import ConfigError, Settings
from webhooks.schedule import parse_duration


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # One line per HTTP request drowns what matters; failures are logged by our own code.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"pixhook: configuration error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixhook", description="Asynchronous image jobs with signed webhooks."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", default=os.environ.get("PIXHOOK_HOST", "127.0.0.1"))
    api.add_argument("--port", type=int, default=int(os.environ.get("PIXHOOK_PORT", "8000")))
    api.set_defaults(run=_api)

    worker = commands.add_parser("worker", help="run an arq worker for one queue")
    worker.add_argument("--queue", choices=["jobs", "deliveries"], required=True)
    worker.set_defaults(run=_worker)

    dev = commands.add_parser("dev", help="embedded Redis + API + workers, for trying pixhook out")
    dev.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    dev.set_defaults(run=_dev)

    demo = commands.add_parser("demo", help="run one job end to end and verify its webhook")
    demo.set_defaults(run=_demo)

    clients = commands.add_parser("clients", help="manage API clients")
    client_commands = clients.add_subparsers(dest="clients_command", required=True)
    create = client_commands.add_parser("create", help="create a client; prints its API key once")
    create.add_argument("name")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=_clients_create)
    listing = client_commands.add_parser("list", help="list clients")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_clients_list)
    rotate = client_commands.add_parser(
        "rotate-secret", help="a new webhook secret; the old one keeps signing for the overlap"
    )
    rotate.add_argument("client_id")
    rotate.add_argument(
        "--overlap",
        type=parse_duration,
        default=None,
        help="e.g. 24h (PIXHOOK_SECRET_ROTATION_OVERLAP)",
    )
    rotate.set_defaults(run=_clients_rotate_secret)

    dlq = commands.add_parser("dlq", help="inspect and replay the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    for name, run, help_text in (
        ("list", _dlq_list, "list dead deliveries, newest first"),
        ("replay", _dlq_replay, "re-queue dead deliveries (same webhook-id)"),
    ):
        sub = dlq_commands.add_parser(name, help=help_text)
        sub.add_argument("ids", nargs="*", help="delivery ids (default: all that match)")
        sub.add_argument("--client", help="only this client's deliveries")
        sub.add_argument("--host", help="only deliveries to this host")
        sub.add_argument("--since", type=float, help="died at or after (Unix seconds)")
        sub.add_argument("--until", type=float, help="died at or before (Unix seconds)")
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(run=run)
    purge = dlq_commands.add_parser("purge", help="delete dead deliveries for good")
    purge.add_argument("ids", nargs="+", help="delivery ids")
    purge.set_defaults(run=_dlq_purge)
    return parser


def _serving_settings() -> Settings:
    settings = Settings.from_env(os.environ)
    settings.require_secret_key()
    return settings


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = _serving_settings()
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        # Open event streams never end by themselves: on SIGTERM they are cut after the grace.
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.worker import create_worker

    create_worker(_serving_settings(), args.queue).run()
    return 0


def _dev(args: argparse.Namespace) -> int:
    from service.devstack import StackError, local_stack

    workdir = Path(tempfile.mkdtemp(prefix="pixhook-dev-"))
    try:
        with local_stack(workdir, port=args.port) as stack:
            print(f"pixhook dev is running (logs in {workdir / 'logs'})")
            print(f"  API             {stack.api_url}")
            print(f"  Redis           {stack.redis_url}")
            print(f"  API key         {stack.client.api_key}")
            print(f"  webhook secret  {stack.client.webhook_secret}")
            print("Submit a job:")
            print(
                f"  curl -H 'Authorization: Bearer {stack.client.api_key}' \\\n"
                """    -F job='{"type":"image.transform","input":{"width":256}}' \\\n"""
                f"    -F image=@photo.jpg {stack.api_url}/v1/jobs"
            )
            print("Press Ctrl-C to stop.", flush=True)
            return _wait_until_stopped(stack.processes.exited)
    except StackError as exc:
        print(f"pixhook dev: {exc} (logs in {workdir / 'logs'})", file=sys.stderr)
        return 1


def _wait_until_stopped(exited: Any) -> int:
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stop:
        if gone := exited():
            print(f"pixhook dev: stopping, a process exited: {gone}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return run_demo()


def _clients_create(args: argparse.Namespace) -> int:
    async def create() -> NewClient:
        async with client_store(_redis_url()) as store:
            return await store.create(args.name)

    made = asyncio.run(create())
    record = {
        "id": made.client.id,
        "name": made.client.name,
        "api_key": made.api_key,
        "webhook_secret": made.webhook_secret,
    }
    if args.json:
        print(json.dumps(record))
    else:
        for key, value in record.items():
            print(f"{key:15} {value}")
        print("The API key is shown only now; pixhook keeps only its SHA-256 digest.")
    return 0


def _clients_list(args: argparse.Namespace) -> int:
    async def listing() -> list[Client]:
        async with client_store(_redis_url()) as store:
            return await store.list_clients()

    clients = asyncio.run(listing())
    if args.json:
        print(
            json.dumps([{"id": c.id, "name": c.name, "created_at": c.created_at} for c in clients])
        )
    else:
        for client in clients:
            print(f"{client.id}  {client.name}")
    return 0


def _clients_rotate_secret(args: argparse.Namespace) -> int:
    overlap = args.overlap
    if overlap is None:
        overlap = Settings.from_env(os.environ).secret_rotation_overlap_s

    async def rotate() -> str | None:
        async with client_store(_redis_url()) as store:
            return await store.rotate_secret(args.client_id, overlap)

    secret = asyncio.run(rotate())
    if secret is None:
        print(f"pixhook: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"webhook_secret  {secret}")
    print(f"The previous secret keeps signing (as a second signature) for {overlap:g}s.")
    return 0


def _dlq_list(args: argparse.Namespace) -> int:
    from service.operator import dlq_list

    return dlq_list(Settings.from_env(os.environ), args)


def _dlq_replay(args: argparse.Namespace) -> int:
    from service.operator import dlq_replay

    return dlq_replay(Settings.from_env(os.environ), args)


def _dlq_purge(args: argparse.Namespace) -> int:
    from service.operator import dlq_purge

    return dlq_purge(Settings.from_env(os.environ), args)


def _redis_url() -> str:
    return Settings.from_env(os.environ).redis_url
