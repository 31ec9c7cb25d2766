"""An `image.analyze` batch against a provider with several API keys, each limited on its own, one
of them revoked mid-run: completion time against the minimum the keys allow, 429s, and items
that must never fail for either.

    .venv/bin/python -m bench.provider_batch --revoke-at 300              # at the keys' limit
    .venv/bin/python -m bench.provider_batch --revoke-at 300 --rate 600   # pixhook 2x above it
    .venv/bin/python -m bench.provider_batch --revoke-at 300 --provider anthropic
    .venv/bin/python -m bench.provider_batch --keys 1 --items 1000 --provider-limit 600

Run it as a module from the repository root: the provider is the test suite's stand-in for
`--provider` (tests/support/openai_standin.py or anthropic_standin.py: a uvicorn server on
127.0.0.1 in this process, in a thread) with `--keys` keys: vision calls, streamed, each reply
after `--latency` s and then in 16-character pieces every `--chunk-delay` s. It counts each key's
requests in fixed windows and answers 429 with `retry-after` beyond `--provider-limit`/min per
key, and every reply carries the provider's rate-limit headers for its key (what is left in the
window, when it resets). With `--revoke-at N` the last key is revoked at the stand-in (401 from
then on) once it has answered N calls.

The stack (`service.cli.devstack.local_stack`: embedded Redis, the API, `--workers` jobs workers
and the deliveries worker) has all the keys and is configured for `--rate` requests/min per key
and model (default: the stand-in's limit) and `--burst`, and `--concurrency` for the provider's,
the jobs workers' and the batch's concurrency, so the keys' limits, not the workers, are the
bottleneck. With `--rate` above the limit only the providers' headers keep pixhook under it.
Items are distinct 96x96 JPEGs by URL from an HTTP server on 127.0.0.1 (distinct after the
service's own re-encoding, checked, so the vision cache answers none). A 4-item warm-up batch runs
unlimited first, then the limit is switched on and the measured batch posted; it is polled every
100 ms, the keys' shared rate factors read from Redis alongside. bench/provider_limit.py derives
the minimum; bench/README.md defines the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import re
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image, ImageDraw

from bench.api import Poll, batch_body, post_accepted, results_of, unix_seconds, wait_for_batch
from bench.errors import BenchError
from bench.provider_limit import Limit, stand_in_limit
from bench.provider_report import report
from bench.provider_standins import (
    PROVIDERS,
    Provider,
    Revoker,
    StandIn,
    answer,
    bench_keys,
    factor_key,
    running_standin,
    stack_env,
    vision_model,
)
from bench.receivers import LocalServer, photos
from bench.stack import log_messages, log_problems, workdir
from service.cli.devstack import RunningStack, local_stack
from service.config import Settings
from service.providers import vision
from tests.support.standin_server import Window

__all__ = ["MODEL", "Limit", "make_image", "stand_in_limit"]

IMAGE_SIDE = 96
WARM_UP_ITEMS = 4
MODEL = vision_model("openai")
RECOVERY_S = Settings().providers.rate_recovery_s


# The inputs: distinct small images, served by URL.


def make_image(index: int) -> bytes:
    """A 96x96 JPEG: a colour field, a few shapes and the index's bits as a 4x4 grid of cells."""
    rng = random.Random(index)
    image = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), tuple(rng.randrange(256) for _ in "RGB"))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y, r = rng.randrange(IMAGE_SIDE), rng.randrange(IMAGE_SIDE), rng.randrange(6, 24)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in "RGB"))
    for bit in range(16):
        x, y = 8 + 20 * (bit % 4), 8 + 20 * (bit // 4)
        shade = 255 if index >> bit & 1 else 0
        draw.rectangle((x, y, x + 9, y + 9), fill=(shade, shade, shade))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def distinct_images(count: int) -> list[bytes]:
    """`count` images, checked distinct as the vision cache keys them (re-encoded for the model)."""
    images = [make_image(index) for index in range(count)]
    settings = Settings()
    prepared = {
        hashlib.sha256(
            vision.prepare_image(
                i, settings.providers.vision_max_side, settings.limits.max_image_pixels
            )
        ).digest()
        for i in images
    }
    if len(prepared) != len(images):
        raise BenchError(f"only {len(prepared)} distinct images of {len(images)}")
    return images


def analyze_batch(server: LocalServer, indexes: range, provider: Provider) -> bytes:
    inputs = ({"image": {"url": server.photo_url(i)}, "provider": provider} for i in indexes)
    return batch_body("image.analyze", inputs)


# One measured batch on a fresh stack.


@dataclass(frozen=True)
class Config:
    provider: Provider
    items: int
    keys: tuple[str, ...]
    revoke_at: int | None
    limit: Limit
    rate: int
    burst: int
    concurrency: int
    workers: int
    latency_s: float
    chunk_delay_s: float
    timeout_s: float
    keep_workdir: bool

    @property
    def model(self) -> str:
        return vision_model(self.provider)

    @property
    def revoked(self) -> str | None:
        return self.keys[-1] if self.revoke_at is not None else None

    def stack_env(self, standin: StandIn) -> dict[str, str]:
        return stack_env(self.provider, standin, self.keys) | {
            "PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": str(self.rate),
            "PIXHOOK_PROVIDER_BURST": str(self.burst),
            "PIXHOOK_PROVIDER_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_JOB_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_BATCH_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_CLIENT_BATCH_CONCURRENCY": str(max(64, self.concurrency)),
        }


@dataclass
class Outcome:
    items: int
    concurrency: int = 0
    post_s: float = 0.0
    wall_s: float = 0.0  # just before the POST -> the first poll that saw the batch ended
    run_s: float = 0.0  # the batch record's started_at -> finished_at
    status: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)  # the lowest key's rate factor, per poll
    cuts: set[tuple[str, str]] = field(default_factory=set)  # (key, when cut), as polls saw them
    windows: list[Window] = field(default_factory=list)  # all keys summed
    key_windows: dict[str, list[Window]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)  # the stand-in's records
    revoked_at: float | None = None  # monotonic, at the stand-in
    answered_before_revocation: int | None = None  # M: bench/provider_limit.py
    fetches: int = 0
    jobs_by_worker: dict[str, int] = field(default_factory=dict)
    log_lines: dict[str, Counter[str]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)


def rate_factor(store: redis.Redis, key: str) -> tuple[float, str | None]:
    """One key's shared rate factor now, as every worker sees it, and when it was last cut
    (Redis ms): `current_factor` of service/providers/limits.py, read from outside."""
    cut, cut_at = store.hmget(key, ["factor", "at"])  # type: ignore[misc]
    if cut is None:
        return 1.0, None
    now_s, now_us = store.time()  # type: ignore[misc]
    now_ms = now_s * 1000 + now_us // 1000
    recovered = (now_ms - float(cut_at)) / (RECOVERY_S * 1000)
    return min(1.0, float(cut) + recovered), cut_at.decode()


def run(config: Config, server: LocalServer, standin: StandIn) -> Outcome:
    with workdir("pixhook-bench-provider-", config.keep_workdir) as path:
        with local_stack(path, config.stack_env(standin)) as stack:
            for number in range(2, config.workers + 1):  # start_worker would reuse the name
                stack.processes.start(f"worker-jobs-{number}", "worker", "--queue", "jobs")
            outcome = measure(config, stack, server, standin)
        outcome.jobs_by_worker = jobs_by_worker(path / "logs")
        outcome.log_lines = log_problems(path / "logs")
    return outcome


def measure(config: Config, stack: RunningStack, server: LocalServer, standin: StandIn) -> Outcome:
    n = config.items
    store = redis.Redis.from_url(stack.redis_url)
    auth = {"authorization": f"Bearer {stack.client.api_key}"}
    factor_keys = {key: factor_key(config.provider, key, config.model) for key in config.keys}
    try:
        with httpx.Client(base_url=stack.api_url, headers=auth, timeout=60) as api:
            # Warm-up (untimed, the stand-in unlimited): imports, connections, both workers up.
            warm_up = analyze_batch(server, range(n, n + WARM_UP_ITEMS), config.provider)
            wait_for_batch(api, stack, post_accepted(api, "/v1/batches", warm_up)["id"], 60)
            time.sleep(2.0)  # the rates' buckets full again, as for a batch on an idle day

            body = analyze_batch(server, range(n), config.provider)
            outcome = Outcome(n)
            fetches_before = server.files_served
            # Every reply after the latency, streamed in pieces; enough for every retry too.
            reply = answer(
                config.provider, delay_s=config.latency_s, chunk_delay_s=config.chunk_delay_s
            )
            standin.script([reply] * (3 * n))
            standin.count_requests(config.limit.window_s, config.limit.per_minute)
            revoker = (
                Revoker(standin, config.keys, config.revoked, config.revoke_at)
                if config.revoked is not None and config.revoke_at is not None
                else None
            )
            start = time.monotonic()
            with revoker or nullcontext():
                created = post_accepted(api, "/v1/batches", body)
                outcome.post_s = time.monotonic() - start
                outcome.concurrency = created["concurrency"]

                def on_poll(poll: Poll) -> None:
                    outcome.polls.append(poll)
                    lowest = 1.0
                    for key, redis_key in factor_keys.items():
                        factor, cut_at = rate_factor(store, redis_key)
                        lowest = min(lowest, factor)
                        if cut_at is not None:
                            outcome.cuts.add((key, cut_at))
                    outcome.factors.append(lowest)

                batch = wait_for_batch(api, stack, created["id"], config.timeout_s, on_poll)
            outcome.wall_s = time.monotonic() - start
            outcome.windows = standin.window_counts()
            outcome.key_windows = {key: standin.window_counts(key) for key in config.keys}
            outcome.requests = list(standin.requests)
            standin.count_requests()  # counted, no longer limited
            if revoker is not None:
                outcome.revoked_at = revoker.at
                if revoker.at is not None:
                    outcome.answered_before_revocation = sum(
                        1 for r in outcome.requests if r["usage"] and r["at"] < revoker.at
                    )
            outcome.run_s = unix_seconds(batch["finished_at"]) - unix_seconds(batch["started_at"])
            outcome.status, outcome.counts = batch["status"], batch["counts"]
            outcome.lines = results_of(api, batch)
            outcome.fetches = server.files_served - fetches_before
            outcome.checks = check(outcome)
    finally:
        store.close()
    return outcome


def check(outcome: Outcome) -> list[str]:
    """What differs from every item run once, answered by the provider, not from the cache."""
    n, lines, problems = outcome.items, outcome.lines, []
    if outcome.status != "completed":
        problems.append(f"status {outcome.status}")
    if len(lines) != n or {line["index"] for line in lines} != set(range(n)):
        problems.append(f"{len(lines)} result lines, {len({x['index'] for x in lines})} indexes")
    cached = sum(1 for x in lines if x["output"] and x["output"]["provider"]["cached"])
    if cached:
        problems.append(f"{cached} answers from the cache")
    if outcome.fetches != n:
        problems.append(f"{outcome.fetches} image fetches for {n} items")
    if max((p.in_flight for p in outcome.polls), default=0) > outcome.concurrency:
        problems.append("more items in flight than the batch's concurrency")
    if outcome.revoked_at is None and outcome.answered_before_revocation is not None:
        problems.append("the key was never revoked")
    return problems


# What a jobs worker logs (arq) as it starts a job.
STARTED_JOB = re.compile(r"\d+\.\d+s → \S+:run_job\(")


def jobs_by_worker(logdir: Path) -> dict[str, int]:
    """The jobs each jobs worker started, from its log."""
    logs = sorted(logdir.glob("worker-jobs*.log"))
    return {
        log.stem: sum(bool(STARTED_JOB.search(message)) for _, message in log_messages(log))
        for log in logs
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--provider", choices=PROVIDERS, default="openai")
    parser.add_argument("--items", type=int, default=900, help="batch size (default 900)")
    parser.add_argument("--keys", type=int, default=3, help="API keys (default 3)")
    parser.add_argument(
        "--revoke-at",
        type=int,
        metavar="N",
        help="revoke the last key at the stand-in once it has answered N calls (default: never)",
    )
    parser.add_argument(
        "--provider-limit",
        type=int,
        default=300,
        metavar="RPM",
        help="requests/min the stand-in allows each key (default 300)",
    )
    parser.add_argument(
        "--window",
        type=float,
        metavar="S",
        help="the stand-in's window in seconds (default: the shortest of at least 1 s holding a "
        "whole number of requests: 1 s at 300/min)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        metavar="RPM",
        help="PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE, per key (default: --provider-limit)",
    )
    parser.add_argument(
        "--burst", type=int, default=1, help="PIXHOOK_PROVIDER_BURST (default 1; the service's: 10)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="PIXHOOK_PROVIDER_CONCURRENCY, _JOB_CONCURRENCY and _BATCH_CONCURRENCY (default 32)",
    )
    parser.add_argument("--workers", type=int, default=2, help="jobs workers (default 2)")
    parser.add_argument(
        "--latency", type=float, default=0.3, help="seconds before each reply (default 0.3)"
    )
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.01,
        help="seconds before each 16-character piece of the reply (default 0.01: ~0.2 s in all)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="how long the batch may run (default 600 s)"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep the stack's dir (logs/)")
    args = parser.parse_args()
    if min(args.items, args.keys, args.workers, args.burst, args.concurrency) < 1:
        parser.error("--items, --keys, --workers, --burst and --concurrency must be at least 1")
    if args.revoke_at is not None and (args.keys < 2 or not 0 < args.revoke_at < args.items):
        parser.error("--revoke-at needs at least 2 keys and 0 < N < --items")
    config = Config(
        provider=args.provider,
        items=args.items,
        keys=bench_keys(args.provider, args.keys),
        revoke_at=args.revoke_at,
        limit=stand_in_limit(args.provider_limit, args.window, args.keys),
        rate=args.rate or args.provider_limit,
        burst=args.burst,
        concurrency=args.concurrency,
        workers=args.workers,
        latency_s=args.latency,
        chunk_delay_s=args.chunk_delay,
        timeout_s=args.timeout,
        keep_workdir=args.keep_workdir,
    )
    images = distinct_images(args.items + WARM_UP_ITEMS)
    print(f"batch of {args.items:,} items ...", file=sys.stderr, flush=True)
    with (
        LocalServer(photos(images)) as server,
        running_standin(config.provider, config.keys) as standin,
    ):
        outcome = run(config, server, standin)
    print(f"  done in {outcome.wall_s:.1f} s", file=sys.stderr, flush=True)
    return report(config, outcome)


if __name__ == "__main__":
    sys.exit(main())
