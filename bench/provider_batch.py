"""A 1,000-item `image.analyze` batch against a provider limited to 600 requests/min: completion
time against the limit's minimum, and 429s that must never become failed items.

    .venv/bin/python -m bench.provider_batch                        # the figure (~1 min 50 s)
    .venv/bin/python -m bench.provider_batch --provider-limit 400   # it allows less (~3 min 15 s)
    .venv/bin/python -m bench.provider_batch --burst 10             # the default burst instead

Run it as a module from the repository root: the provider is `tests.support.openai_standin`, the
test suite's OpenAI-compatible stand-in (a uvicorn server on 127.0.0.1 in this process, in a
thread): vision chat completions, streamed, each reply after `--latency` s and then in
16-character pieces every `--chunk-delay` s. It counts requests in fixed windows and enforces its
limit per window, answering 429 with `Retry-After`/`retry-after-ms` and OpenAI's
`rate_limit_exceeded` body.

The stack (`service.cli.devstack.local_stack`: embedded Redis, the API, `--workers` jobs workers and
the deliveries worker) is configured for `--rate` requests/min and `--burst`
(`PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE`, `PIXHOOK_PROVIDER_BURST`), and `--concurrency` for the
provider's, the jobs workers' and the batch's concurrency, so the provider's rate, not the
workers, is the bottleneck. Items are distinct 96x96 JPEGs by URL from an HTTP server on
127.0.0.1 (distinct after the service's own re-encoding, checked, so the vision cache answers
none of them). A 4-item warm-up batch runs unlimited first, then the limit is
switched on and the measured batch posted; it is polled every 100 ms, the shared rate factor read
from Redis alongside. bench/README.md defines the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image, ImageDraw

from bench.api import Poll, batch_body, post_accepted, results_of, unix_seconds, wait_for_batch
from bench.errors import BenchError
from bench.figures import percentile
from bench.receivers import LocalServer, photos
from bench.stack import log_messages, log_problems, workdir
from service.cli.devstack import RunningStack, local_stack
from service.config import Settings
from service.providers import vision
from tests.support.openai_standin import API_KEY, Answer, OpenAIStandIn, Window

IMAGE_SIDE = 96
WARM_UP_ITEMS = 4
POLL_EVERY_S = 0.1
MODEL = Settings().providers.openai_vision_model
FACTOR_KEY = f"pixhook:provider:openai:{{{MODEL}}}:factor"  # service/providers/limits.py
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


@contextmanager
def standin_provider() -> Iterator[OpenAIStandIn]:
    standin = OpenAIStandIn().start()
    try:
        yield standin
    finally:
        standin.close()


def analyze_batch(server: LocalServer, indexes: range) -> bytes:
    inputs = ({"image": {"url": server.photo_url(i)}, "provider": "openai"} for i in indexes)
    return batch_body("image.analyze", inputs)


# The limit: the stand-in's window, and the minimum it allows.


@dataclass(frozen=True)
class Limit:
    per_minute: int  # what --provider-limit asked for
    window_s: float
    per_window: int  # what the stand-in lets through per window (its own rounding)

    @property
    def effective_per_minute(self) -> float:
        return self.per_window * 60 / self.window_s

    def minimum_s(self, items: int) -> float:
        """The earliest the last of `items` requests may arrive after the first: the first window
        takes `per_window` at once, every later `per_window` waits one more window."""
        return max(0, items - self.per_window) * self.window_s / self.per_window


def stand_in_limit(per_minute: int, window_s: float | None) -> Limit:
    """By default the shortest window of at least 1 s that holds a whole number of requests at
    `per_minute` (1 s for 600/min: 10; 1.05 s for 400/min: 7), as OpenAI enforces per-minute
    limits in about per-second slices."""
    if window_s is None:
        window_s = 60 * math.ceil(per_minute / 60) / per_minute
        if math.floor(per_minute * window_s / 60) < math.ceil(per_minute / 60):
            window_s = math.nextafter(window_s, math.inf)  # 60 * 7 / 400 * 400 / 60 < 7
    # The stand-in's own rounding (tests/support/openai_standin.py, count_requests).
    return Limit(per_minute, window_s, max(1, math.floor(per_minute * window_s / 60)))


# One measured batch on a fresh stack.


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
    factors: list[float] = field(default_factory=list)  # the shared rate factor at each poll
    cuts: set[str] = field(default_factory=set)  # when it was cut (Redis ms), as the polls saw
    windows: list[Window] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic, at the stand-in
    post_at: float = 0.0
    fetches: int = 0
    jobs_by_worker: dict[str, int] = field(default_factory=dict)
    log_lines: dict[str, Counter[str]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)


def rate_factor(store: redis.Redis) -> tuple[float, str | None]:
    """The shared rate factor now, as every worker sees it, and when it was last cut (Redis ms):
    `current_factor` of service/providers/limits.py, read from outside."""
    cut, cut_at = store.hmget(FACTOR_KEY, ["factor", "at"])  # type: ignore[misc]
    if cut is None:
        return 1.0, None
    now_s, now_us = store.time()  # type: ignore[misc]
    now_ms = now_s * 1000 + now_us // 1000
    recovered = (now_ms - float(cut_at)) / (RECOVERY_S * 1000)
    return min(1.0, float(cut) + recovered), cut_at.decode()


@dataclass(frozen=True)
class Config:
    items: int
    limit: Limit
    rate: int
    burst: int
    concurrency: int
    workers: int
    latency_s: float
    chunk_delay_s: float
    timeout_s: float
    keep_workdir: bool

    def stack_env(self, standin: OpenAIStandIn) -> dict[str, str]:
        return {
            "PIXHOOK_OPENAI_BASE_URL": standin.base_url,
            "PIXHOOK_OPENAI_API_KEY": API_KEY,
            "PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": str(self.rate),
            "PIXHOOK_PROVIDER_BURST": str(self.burst),
            "PIXHOOK_PROVIDER_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_JOB_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_BATCH_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_CLIENT_BATCH_CONCURRENCY": str(max(64, self.concurrency)),
        }


def run(config: Config, server: LocalServer, standin: OpenAIStandIn) -> Outcome:
    with workdir("pixhook-bench-provider-", config.keep_workdir) as path:
        with local_stack(path, config.stack_env(standin)) as stack:
            for number in range(2, config.workers + 1):  # start_worker would reuse the name
                stack.processes.start(f"worker-jobs-{number}", "worker", "--queue", "jobs")
            outcome = measure(config, stack, server, standin)
        outcome.jobs_by_worker = jobs_by_worker(path / "logs")
        outcome.log_lines = log_problems(path / "logs")
    return outcome


def measure(
    config: Config, stack: RunningStack, server: LocalServer, standin: OpenAIStandIn
) -> Outcome:
    n = config.items
    store = redis.Redis.from_url(stack.redis_url)
    auth = {"authorization": f"Bearer {stack.client.api_key}"}
    try:
        with httpx.Client(base_url=stack.api_url, headers=auth, timeout=60) as api:
            # Warm-up (untimed, the stand-in unlimited): imports, connections, both workers up.
            warm_up = analyze_batch(server, range(n, n + WARM_UP_ITEMS))
            wait_for_batch(api, stack, post_accepted(api, "/v1/batches", warm_up)["id"], 60)
            time.sleep(2.0)  # the shared rate's bucket full again, as for a batch on an idle day

            body = analyze_batch(server, range(n))
            outcome = Outcome(n)
            fetches_before = server.files_served
            # Every reply after the latency, streamed in pieces; enough for every retry too.
            reply = Answer(delay_s=config.latency_s, chunk_delay_s=config.chunk_delay_s)
            standin.script([reply] * (3 * n))
            standin.count_requests(config.limit.window_s, config.limit.per_minute)
            start = outcome.post_at = time.monotonic()
            created = post_accepted(api, "/v1/batches", body)
            outcome.post_s = time.monotonic() - start
            outcome.concurrency = created["concurrency"]

            def on_poll(poll: Poll) -> None:
                factor, cut_at = rate_factor(store)
                outcome.polls.append(poll)
                outcome.factors.append(factor)
                if cut_at is not None:
                    outcome.cuts.add(cut_at)

            batch = wait_for_batch(api, stack, created["id"], config.timeout_s, on_poll)
            outcome.wall_s = time.monotonic() - start
            outcome.windows = standin.window_counts()
            outcome.arrivals = [r["at"] for r in standin.requests]
            standin.count_requests()  # counted, no longer limited
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


# The report.


def report(config: Config, outcome: Outcome) -> int:
    limit, n = config.limit, outcome.items
    minimum = limit.minimum_s(n)
    windows = outcome.windows
    arrived = sum(w.arrived for w in windows)
    refused = sum(w.refused for w in windows)
    accepted = [w.arrived - w.refused for w in windows]
    inner = accepted[1:-1] or accepted  # the first and last windows are partial
    failed = [x for x in outcome.lines if x["status"] != "succeeded"]
    errors = Counter(str((x.get("error") or {}).get("code")) for x in failed)
    providers = [x["output"]["provider"] for x in outcome.lines if x["output"]]
    attempts = Counter(int(p["attempts"]) for p in providers)
    latencies = [float(p["latency_ms"]) for p in providers]
    span = max(outcome.arrivals) - min(outcome.arrivals) if outcome.arrivals else math.nan
    cuts, factors = outcome.cuts, outcome.factors
    matched = limit.effective_per_minute >= config.rate
    ratio = outcome.run_s / minimum

    print(
        f"image.analyze batch of {n:,} distinct {IMAGE_SIDE}x{IMAGE_SIDE} JPEGs by URL, provider "
        f"openai = the stand-in (reply after {1000 * config.latency_s:.0f} ms, streamed in 16-char "
        f"pieces every {1000 * config.chunk_delay_s:.0f} ms)"
    )
    print(
        f"stand-in limit: {limit.per_minute}/min as {limit.per_window} per {limit.window_s:g} s "
        f"window ({limit.effective_per_minute:g}/min), 429 + Retry-After beyond it"
    )
    print(
        f"pixhook: PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE={config.rate} BURST={config.burst}, "
        f"provider/job/batch concurrency {config.concurrency} (batch: {outcome.concurrency}), "
        f"{config.workers} jobs worker(s), rate recovery {RECOVERY_S:g} s"
    )
    print()
    print(
        f"minimum the limit allows: (N - P) * W / P = ({n} - {limit.per_window}) * "
        f"{limit.window_s:g} / {limit.per_window} = {minimum:.1f} s from the first request to "
        f"the last (the last reply's {1000 * config.latency_s:.0f} ms + streaming not included)"
    )
    floor = max(0, n - config.burst) * 60 / config.rate
    print(
        f"pixhook's own floor: (N - burst) * 60 / rate = ({n} - {config.burst}) * 60 / "
        f"{config.rate} = {floor:.1f} s ({floor / minimum:.3f} x minimum)"
    )
    goal = ("met" if ratio <= 1.10 else "MISSED") if matched else "none: the limit is lower"
    print(
        f"completion: started_at -> finished_at {outcome.run_s:.1f} s = {ratio:.3f} x minimum "
        f"(goal <= 1.10: {goal}); POST -> seen completed {outcome.wall_s:.1f} s "
        f"({outcome.wall_s / minimum:.3f} x); POST answered in {outcome.post_s:.2f} s"
    )
    print(
        f"at the stand-in: first -> last request {span:.1f} s ({span / minimum:.3f} x minimum); "
        f"{arrived:,} requests, {refused:,} answered 429, {arrived - refused:,} answered"
    )
    print(
        f"per window (accepted; first and last partial windows left out of the median): "
        f"{len(windows)} windows, max {max(accepted, default=0)}, median "
        f"{statistics.median(inner) if inner else math.nan:g}, max arrived "
        f"{max((w.arrived for w in windows), default=0)}, windows with a 429: "
        f"{sum(1 for w in windows if w.refused)}"
    )
    print(f"  accepted per window, windows: {dict(sorted(Counter(accepted).items()))}")
    refusals = [(i, w.arrived, w.refused) for i, w in enumerate(windows) if w.refused]
    if refusals:
        shown = ", ".join(f"#{i}: {a} arrived/{r} refused" for i, a, r in refusals[:12])
        more = f" (+{len(refusals) - 12} more)" if len(refusals) > 12 else ""
        print(f"  windows with 429s: {shown}{more}")
    print(
        f"items: {outcome.counts.get('succeeded', 0):,} succeeded, {len(failed):,} failed "
        f"(goal 0{': ' + str(dict(errors)) if errors else ''}); provider attempts per item "
        f"{dict(sorted(attempts.items()))}, {sum(v for k, v in attempts.items() if k > 1)} with "
        f"more than one"
    )
    print(
        f"shared rate factor (polls): min {min(factors, default=1.0):.2f}, mean "
        f"{statistics.fmean(factors) if factors else 1.0:.2f}, cuts seen {len(cuts)}"
    )
    print(
        f"provider.latency_ms per item (rate waits, retries and the reply): median "
        f"{percentile(latencies, 50, interpolate=False):.0f}, "
        f"p95 {percentile(latencies, 95, interpolate=False):.0f}, max "
        f"{max(latencies, default=math.nan):.0f}; items in flight at most "
        f"{max((p.in_flight for p in outcome.polls), default=0)}"
    )
    if outcome.jobs_by_worker:
        print(f"jobs run per jobs worker (warm-up included): {outcome.jobs_by_worker}")
    print(
        "check: "
        + ("ok: N result lines, indexes unique, none cached" if not outcome.checks else "")
        + "; ".join(outcome.checks)
    )
    for log, lines in outcome.log_lines.items():
        for text, count in lines.most_common(5):
            print(f"log {log}: {count} x {text}")
    missed = failed or outcome.checks or (matched and ratio > 1.10)
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=1000, help="batch size (default 1000)")
    parser.add_argument(
        "--provider-limit",
        type=int,
        default=600,
        metavar="RPM",
        help="requests/min the stand-in allows (default 600)",
    )
    parser.add_argument(
        "--window",
        type=float,
        metavar="S",
        help="the stand-in's window in seconds (default: the shortest of at least 1 s holding a "
        "whole number of requests: 1 s at 600/min)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=600,
        metavar="RPM",
        help="PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE (default 600)",
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
    if args.items < 1 or args.workers < 1 or args.burst < 1 or args.concurrency < 1:
        parser.error("--items, --workers, --burst and --concurrency must be at least 1")
    config = Config(
        items=args.items,
        limit=stand_in_limit(args.provider_limit, args.window),
        rate=args.rate,
        burst=args.burst,
        concurrency=args.concurrency,
        workers=args.workers,
        latency_s=args.latency,
        chunk_delay_s=args.chunk_delay,
        timeout_s=args.timeout,
        keep_workdir=args.keep_workdir,
    )
    images = [make_image(index) for index in range(args.items + WARM_UP_ITEMS)]
    # What the cache is keyed by: the photo as the service re-encodes it for the model.
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
    print(f"batch of {args.items:,} items ...", file=sys.stderr, flush=True)
    with LocalServer(photos(images)) as server, standin_provider() as standin:
        outcome = run(config, server, standin)
    print(f"  done in {outcome.wall_s:.1f} s", file=sys.stderr, flush=True)
    return report(config, outcome)


if __name__ == "__main__":
    sys.exit(main())
