"""The `pixhook` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib.metadata import version
from typing import Any

from redis.exceptions import RedisError

from service.cli import clients as client_commands
from service.config import (
    ConfigError,
    LoggingSettings,
    RedisSettings,
    Settings,
    read_section,
    warn_of_unknown_variables,
)
from service.logs import LogFormat, setup_logging
from service.moments import parse_moment, parse_seconds
from service.redis_url import check_redis, redis_problem


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        setup_logging(_log_format(args))
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"pixhook: configuration error: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        # Settings were read (and checked) before any command reached Redis.
        redis_url = read_section(RedisSettings, os.environ).url
        print(f"pixhook: {redis_problem(exc, redis_url)}", file=sys.stderr)
        return 1


def _log_format(args: argparse.Namespace) -> LogFormat:
    """JSON for the services a log collector reads; text for people at a terminal."""
    chosen = args.log_format or read_section(LoggingSettings, os.environ).format
    if chosen == "":
        return "json" if args.command in ("api", "worker") else "text"
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
    parser.add_argument("--version", action="version", version=f"pixhook {version('pixhook')}")
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", help="default: PIXHOOK_HOST, else 127.0.0.1")
    api.add_argument("--port", type=int, help="default: PIXHOOK_PORT, else 8000")
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
    client_parsers = clients.add_subparsers(dest="clients_command", required=True)
    create = client_parsers.add_parser("create", help="create a client; prints its API key once")
    create.add_argument("name")
    create.add_argument("--rate", type=_positive(float), help="requests/s (default: the service's)")
    create.add_argument("--burst", type=_positive(int), help="requests above the rate at once")
    create.add_argument("--max-in-flight", type=_positive(int), help="jobs queued or running")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=client_commands.create_client)
    listing = client_parsers.add_parser("list", help="list clients, their limits, revocations")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=client_commands.list_clients)
    revoke = client_parsers.add_parser("revoke", help="the client's API keys stop working at once")
    revoke.add_argument("client_id")
    revoke.set_defaults(run=client_commands.revoke_client)
    rotate_key = client_parsers.add_parser(
        "rotate-key", help="a new API key, printed once; the old one stops (after the overlap)"
    )
    rotate_key.add_argument("client_id")
    rotate_key.add_argument(
        "--overlap", type=_seconds, default=0.0, help="keep the old key working, e.g. 1h or 600"
    )
    rotate_key.set_defaults(run=client_commands.rotate_key)
    rotate = client_parsers.add_parser(
        "rotate-secret", help="a new webhook secret; the old one keeps signing for the overlap"
    )
    rotate.add_argument("client_id")
    rotate.add_argument(
        "--overlap",
        type=_seconds,
        default=None,
        help="e.g. 24h (PIXHOOK_SECRET_ROTATION_OVERLAP)",
    )
    rotate.set_defaults(run=client_commands.rotate_secret)

    _add_dlq_commands(commands)
    _add_provider_commands(commands)
    return parser


def _add_provider_commands(commands: Any) -> None:
    providers = commands.add_parser("providers", help="the providers' API keys")
    actions = providers.add_subparsers(dest="providers_command", required=True)
    keys = actions.add_parser("keys", help="list the keys: in rotation, or out since when")
    keys.add_argument("--provider", choices=("anthropic", "openai"))
    keys.add_argument("--json", action="store_true", help="print JSON")
    keys.set_defaults(run=_providers_keys)
    check = actions.add_parser("check", help="try each key in rotation; refused ones leave it")
    check.add_argument("--provider", choices=("anthropic", "openai"))
    check.set_defaults(run=_providers_check)
    reinstate = actions.add_parser(
        "reinstate", help="put refused keys back in rotation (all, or the one given)"
    )
    reinstate.add_argument("provider", choices=("anthropic", "openai"))
    reinstate.add_argument("--key", help="the last four characters of the key")
    reinstate.set_defaults(run=_providers_reinstate)


def _add_dlq_commands(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="inspect and replay the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", help="list dead deliveries, newest first")
    _add_dlq_selection(listing)
    listing.set_defaults(run=_dlq_list)
    replay = dlq_commands.add_parser("replay", help="re-queue dead deliveries (same webhook-id)")
    _add_dlq_selection(replay)
    replay.add_argument(
        "--all", action="store_true", help="every dead delivery (of --client, if given)"
    )
    replay.set_defaults(run=_dlq_replay, usage_error=replay.error)
    purge = dlq_commands.add_parser("purge", help="delete dead deliveries for good")
    purge.add_argument("ids", nargs="+", help="delivery ids")
    purge.set_defaults(run=_dlq_purge)


def _add_dlq_selection(parser: argparse.ArgumentParser) -> None:
    moment = "Unix seconds, a duration ago (1h) or ISO 8601"
    parser.add_argument("ids", nargs="*", help="delivery ids")
    parser.add_argument("--client", help="only this client's deliveries")
    parser.add_argument("--host", help="only deliveries to this host")
    parser.add_argument("--since", type=_moment, help=f"died at or after: {moment}")
    parser.add_argument("--until", type=_moment, help=f"died at or before: {moment}")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _serving_settings() -> Settings:
    """Settings for the API and the workers, which start only on a Redis they can reach (once
    running, a worker waits for a lost Redis to come back; the API answers 503)."""
    settings = Settings.from_env(os.environ)
    warn_of_unknown_variables(os.environ)
    settings.require_secret_key()
    check_redis(settings.redis.url)
    return settings


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = _serving_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api.host if args.host is None else args.host,
        port=settings.api.port if args.port is None else args.port,
        log_level="info",
        # Our own logging (service/logs.py) formats uvicorn's lines; the API logs each request
        # itself, with its request id, in place of uvicorn's access log.
        log_config=None,
        access_log=False,
        # Open event streams never end by themselves: on SIGTERM they are cut after the grace.
        timeout_graceful_shutdown=int(settings.deliveries.shutdown_grace_s),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.worker import run_worker

    run_worker(_serving_settings(), args.queue)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from service.cli.dev import run_dev

    warn_of_unknown_variables(os.environ)
    return run_dev(args.port)


def _demo(args: argparse.Namespace) -> int:
    from service.cli.demo import run_demo

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


def _seconds(raw: str) -> float:
    """A length of time as environment variables take it: seconds (600) or a duration (10m)."""
    try:
        seconds = parse_seconds(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is negative")
    return seconds


def _moment(raw: str) -> float:
    """A moment as the API takes it, in Unix seconds."""
    try:
        return parse_moment(raw, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dlq_list(args: argparse.Namespace) -> int:
    from service.cli.dlq import dlq_list

    return dlq_list(Settings.from_env(os.environ), args)


def _dlq_replay(args: argparse.Namespace) -> int:
    from service.cli.dlq import dlq_replay

    selected = args.ids or args.host or args.since is not None or args.until is not None
    if not (selected or args.all):
        # As the API asks for {"all": true}: replaying everything is never a default.
        args.usage_error(
            "say what to replay: delivery ids, --host, --since or --until, or --all for every "
            "dead delivery (of --client, if given)"
        )
    return dlq_replay(Settings.from_env(os.environ), args)


def _dlq_purge(args: argparse.Namespace) -> int:
    from service.cli.dlq import dlq_purge

    return dlq_purge(Settings.from_env(os.environ), args)


def _providers_keys(args: argparse.Namespace) -> int:
    from service.cli.providers import keys_list

    return keys_list(Settings.from_env(os.environ), args)


def _providers_check(args: argparse.Namespace) -> int:
    from service.cli.providers import keys_check

    return keys_check(Settings.from_env(os.environ), args)


def _providers_reinstate(args: argparse.Namespace) -> int:
    from service.cli.providers import keys_reinstate

    return keys_reinstate(Settings.from_env(os.environ), args)
