"""The `pixhook` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.clients import Client, ClientLimits, ClientRevoked, NewClient, client_store
from service.config import ConfigError, Settings
from service.logs import LogFormat, setup_logging
from webhooks.schedule import parse_duration


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        setup_logging(_log_format(args))
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"pixhook: configuration error: {exc}", file=sys.stderr)
        return 2


def _log_format(args: argparse.Namespace) -> LogFormat:
    """JSON for the services a log collector reads; text for people at a terminal."""
    chosen = args.log_format or os.environ.get("PIXHOOK_LOG_FORMAT", "")
    if chosen == "":
        return "json" if args.command in ("api", "worker") else "text"
    if chosen not in ("json", "text"):
        raise ConfigError("PIXHOOK_LOG_FORMAT", f"must be json or text, not {chosen!r}")
    return "json" if chosen == "json" else "text"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixhook", description="Asynchronous image jobs with signed webhooks."
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "text"],
        help="log lines as JSON objects or text (PIXHOOK_LOG_FORMAT; default: json for api "
        "and worker, text otherwise)",
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
    create.add_argument("--rate", type=_positive(float), help="requests/s (default: the service's)")
    create.add_argument("--burst", type=_positive(int), help="requests above the rate at once")
    create.add_argument("--max-in-flight", type=_positive(int), help="jobs queued or running")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=_clients_create)
    listing = client_commands.add_parser("list", help="list clients, their limits, revocations")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_clients_list)
    revoke = client_commands.add_parser("revoke", help="the client's API keys stop working at once")
    revoke.add_argument("client_id")
    revoke.set_defaults(run=_clients_revoke)
    rotate_key = client_commands.add_parser(
        "rotate-key", help="a new API key, printed once; the old one stops (after the overlap)"
    )
    rotate_key.add_argument("client_id")
    rotate_key.add_argument(
        "--overlap", type=parse_duration, default=0.0, help="keep the old key working, e.g. 1h"
    )
    rotate_key.set_defaults(run=_clients_rotate_key)
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
        # Our own logging (service/logs.py) formats uvicorn's lines; the API logs each request
        # itself, with its request id, in place of uvicorn's access log.
        log_config=None,
        access_log=False,
        # Open event streams never end by themselves: on SIGTERM they are cut after the grace.
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.worker import run_worker

    run_worker(_serving_settings(), args.queue)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from service.devstack import StackError, local_stack

    workdir = Path(tempfile.mkdtemp(prefix="pixhook-dev-"))
    try:
        # The children log as text, for a person reading them, unless told otherwise.
        log_format = {"PIXHOOK_LOG_FORMAT": os.environ.get("PIXHOOK_LOG_FORMAT", "text")}
        with local_stack(workdir, log_format, port=args.port) as stack:
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


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(raw: str) -> float | int:
        try:
            value = kind(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}: {raw!r}")
        return value

    return parse


def _clients_create(args: argparse.Namespace) -> int:
    limits = ClientLimits(args.rate, args.burst, args.max_in_flight)

    async def create() -> NewClient:
        async with client_store(_redis_url()) as store:
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


def _clients_list(args: argparse.Namespace) -> int:
    async def listing() -> list[Client]:
        async with client_store(_redis_url()) as store:
            return await store.list_clients()

    clients = asyncio.run(listing())
    if args.json:
        print(json.dumps([_client_row(c) for c in clients]))
        return 0
    for c in clients:
        state = "active" if c.revoked_at is None else "revoked"
        print(f"{c.id}  {state:7}  {c.name}  limits: {_limits_text(c.limits)}")
    return 0


def _client_row(client: Client) -> dict[str, Any]:
    return {
        "id": client.id,
        "name": client.name,
        "created_at": client.created_at,
        "limits": asdict(client.limits),
        "revoked_at": client.revoked_at,
    }


def _clients_revoke(args: argparse.Namespace) -> int:
    async def revoke() -> Client | None:
        async with client_store(_redis_url()) as store:
            return await store.revoke(args.client_id)

    if asyncio.run(revoke()) is None:
        print(f"pixhook: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.client_id}: its API keys no longer work; queued webhooks still go out")
    return 0


def _clients_rotate_key(args: argparse.Namespace) -> int:
    async def rotate() -> str | None:
        async with client_store(_redis_url()) as store:
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
