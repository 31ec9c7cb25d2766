"""Batches of thousands: items/s, the API's and workers' peak RSS at 1k vs 10k, Redis per item.

    .venv/bin/python -m bench.batches [--sizes 1000 10000] [--concurrency C] [--job-concurrency J]
                                      [--images 4] [--timeout 1200] [--keep-workdir]

Each batch size gets its own fresh stack (`service.cli.devstack.local_stack`: embedded Redis,
the API and both workers), so each process's kernel high-water mark (VmHWM) belongs to one batch
size.
On each stack: a small untimed warm-up batch, then one `image.transform` batch of N items, each a
small JPEG (320x240) by URL from an HTTP server on 127.0.0.1, out as 64-wide WebP, with a batch
webhook to that same server. A thread samples the processes' RSS every 50 ms; the batch is polled
(`GET /v1/batches/{id}`) every 100 ms, with Redis's `used_memory` read alongside. At the end the
results file must hold exactly N lines, indexes 0..N-1 once each, all succeeded.
bench/README.md defines the figures.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image, ImageDraw, ImageFilter

from bench.api import Poll, batch_body, post_accepted, results_of, unix_seconds, wait_for_batch
from bench.errors import BenchError
from bench.figures import MiB, mib
from bench.processes import Sampler, cpu_seconds, high_water_mark, redis_process, watch
from bench.receivers import LocalServer, photos
from bench.stack import ID_PART, log_problems, workdir
from service.cli.devstack import RunningStack, local_stack

IMAGE_SIZE = (320, 240)
OUTPUT = {"width": 64, "format": "webp"}
WATCHED = {"api": "api", "jobs worker": "worker-jobs", "deliveries worker": "worker-deliveries"}
WARM_UP_ITEMS = 32
WEBHOOK_WAIT_S = 60.0
BATCH_ENDS = ("batch.completed", "batch.canceled")


# The inputs, served by one local server that also receives the batch webhooks.


def make_image(seed: int) -> bytes:
    """A 320x240 JPEG: a gradient, a few shapes, a slight blur; about 10 KB."""
    rng = random.Random(seed)
    image = Image.merge(
        "RGB", [Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(IMAGE_SIZE)] * 3
    )
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.randrange(IMAGE_SIZE[0]), rng.randrange(IMAGE_SIZE[1]), rng.randrange(8, 60)
        colour = tuple(rng.randrange(256) for _ in "RGB")
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    buffer = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(1.5)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def transform_batch(size: int, server: LocalServer, concurrency: int | None) -> bytes:
    inputs = ({"image": {"url": server.photo_url(index)}, **OUTPUT} for index in range(size))
    return batch_body(
        "image.transform", inputs, webhook_url=server.hook_url, concurrency=concurrency
    )


# Watching the processes and Redis.


def used_memory(client: redis.Redis) -> int:
    info = client.info("memory")
    if not isinstance(info, dict):  # the sync client answers at once; the union is for asyncio
        raise BenchError(f"INFO memory answered {info!r}")
    return int(info["used_memory"])


def key_usage(client: redis.Redis, key: str) -> int:
    usage = client.memory_usage(key, samples=0)
    return usage if isinstance(usage, int) else 0


NUMBER_PART = re.compile(r"(?<=:)\d{6,}\b")


def keys_by_pattern(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Every key, its ids replaced by `*`: pattern -> (keys, bytes by MEMORY USAGE)."""
    keys: list[bytes] = list(client.scan_iter(count=1000))
    totals: dict[str, tuple[int, int]] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, usage in zip(chunk, pipe.execute(), strict=True):
            pattern = NUMBER_PART.sub("*", ID_PART.sub(r"\1_*", key.decode()))
            count, size = totals.get(pattern, (0, 0))
            totals[pattern] = (count + 1, size + int(usage or 0))
    return totals


# One batch size on its own stack.


@dataclass
class Outcome:
    size: int
    concurrency: int
    start: float = 0.0  # monotonic, just before the POST
    post_s: float = 0.0
    wall_s: float = 0.0  # just before the POST -> the first poll that saw the batch ended
    run_s: float = 0.0  # the batch record's started_at -> finished_at
    webhook_s: float | None = None  # finished_at -> the batch.completed webhook's arrival
    polls: list[Poll] = field(default_factory=list)
    most_in_flight: int = 0  # the highest `counts.in_flight` a poll saw
    redis_before: int = 0
    redis_queued: int = 0  # right after the POST returned
    items_key: int = 0  # MEMORY USAGE of the batch's items list, right after the POST
    redis_peak: int = 0  # highest used_memory read at a poll
    redis_end: int = 0  # 1 s after the batch ended and its webhook arrived
    kept: dict[str, tuple[int, int]] = field(default_factory=dict)  # pattern -> keys, bytes
    kept_before: dict[str, tuple[int, int]] = field(default_factory=dict)
    rss_before: dict[str, int] = field(default_factory=dict)
    rss_end: dict[str, int] = field(default_factory=dict)
    peak_first_half: dict[str, int] = field(default_factory=dict)
    peak_second_half: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    hwm: dict[str, int] = field(default_factory=dict)
    by_tenth: dict[str, list[int]] = field(default_factory=dict)  # RSS at 10%, 20%... 100% done
    cpu_s: dict[str, float] = field(default_factory=dict)
    files_bytes: int = 0
    image_requests: int = 0
    checks: list[str] = field(default_factory=list)  # problems found; empty when all is well
    log_lines: dict[str, Counter[str]] = field(default_factory=dict)

    def half_rates(self) -> tuple[float, float]:
        """items/s over the first half of the items and over the second, from the polls."""
        start, half = self.start, math.ceil(self.size / 2)
        mid = next(p.at for p in self.polls if p.done >= half)
        end = self.polls[-1].at
        return half / max(mid - start, 1e-9), (self.size - half) / max(end - mid, 1e-9)


def check_results(size: int, batch: dict[str, Any], lines: list[dict[str, Any]]) -> list[str]:
    problems = []
    if batch["status"] != "completed":
        problems.append(f"status {batch['status']}")
    if batch["counts"]["succeeded"] != size:
        problems.append(f"counts {batch['counts']}")
    if batch["results"]["lines"] != size:
        problems.append(f"results.lines {batch['results']['lines']}")
    if len(lines) != size:
        problems.append(f"{len(lines)} lines in the results file")
    indexes = Counter(line["index"] for line in lines)
    if set(indexes) != set(range(size)) or max(indexes.values(), default=0) != 1:
        repeated = sum(1 for n in indexes.values() if n > 1)
        missing = size - len(set(indexes) & set(range(size)))
        problems.append(f"indexes: {missing} missing, {repeated} repeated")
    statuses = Counter(line["status"] for line in lines)
    if statuses != Counter({"succeeded": size}):
        problems.append(f"line statuses {dict(statuses)}")
    widths = Counter(line["output"]["images"][0]["width"] for line in lines if line["output"])
    if set(widths) != {OUTPUT["width"]}:
        problems.append(f"output widths {dict(widths)}")
    return problems


def run_size(
    size: int,
    server: LocalServer,
    concurrency: int | None,
    job_concurrency: int | None,
    timeout_s: float,
    keep_workdir: bool,
) -> Outcome:
    env = {}
    if concurrency is not None:
        env["PIXHOOK_BATCH_CONCURRENCY"] = str(concurrency)
        env["PIXHOOK_CLIENT_BATCH_CONCURRENCY"] = str(max(64, concurrency))
    if job_concurrency is not None:
        env["PIXHOOK_JOB_CONCURRENCY"] = str(job_concurrency)
    with workdir(f"pixhook-bench-batches-{size}-", keep_workdir) as path:
        with local_stack(path, env) as stack:
            server.secret = stack.client.webhook_secret
            outcome = measure(size, stack, server, concurrency, timeout_s)
        outcome.log_lines = log_problems(path / "logs")
    return outcome


def measure(
    size: int, stack: RunningStack, server: LocalServer, concurrency: int | None, timeout_s: float
) -> Outcome:
    processes = watch(stack, WATCHED)
    redis_server = redis_process(stack.redis.port)
    counted = {**processes, **({"redis": redis_server} if redis_server else {})}
    store = redis.Redis.from_url(stack.redis_url)
    sampler = Sampler(processes)
    auth = {"authorization": f"Bearer {stack.client.api_key}"}
    try:
        with httpx.Client(base_url=stack.api_url, headers=auth, timeout=120) as api:
            # Warm-up (untimed): imports, codecs, connections, the first claims.
            warm_up = transform_batch(WARM_UP_ITEMS, server, None)
            warm_up_id = post_accepted(api, "/v1/batches", warm_up)["id"]
            wait_for_batch(api, stack, warm_up_id, timeout_s)
            server.wait_for_events([warm_up_id], BATCH_ENDS, WEBHOOK_WAIT_S)
            time.sleep(1.0)

            body = transform_batch(size, server, concurrency)  # built before the clock starts
            outcome = Outcome(size, 0)
            outcome.kept_before = keys_by_pattern(store)
            outcome.redis_before = used_memory(store)
            outcome.rss_before = sampler.sample()[1]
            requests_before, files_before = server.files_served, stored_bytes(stack.files_dir)
            cpu_before = {name: cpu_seconds(p) for name, p in counted.items()}
            start = outcome.start = time.monotonic()
            created = post_accepted(api, "/v1/batches", body)
            outcome.post_s = time.monotonic() - start
            outcome.redis_queued = used_memory(store)
            batch_id = created["id"]
            outcome.concurrency = created["concurrency"]
            outcome.items_key = key_usage(store, f"pixhook:batch:{batch_id}:items")

            def on_poll(poll: Poll) -> None:
                outcome.polls.append(poll)
                outcome.redis_peak = max(outcome.redis_peak, used_memory(store))

            batch = wait_for_batch(api, stack, batch_id, timeout_s, on_poll)
            end = time.monotonic()
            outcome.wall_s = end - start
            outcome.cpu_s = {n: cpu_seconds(p) - cpu_before[n] for n, p in counted.items()}
            finished_at = unix_seconds(batch["finished_at"])
            outcome.run_s = finished_at - unix_seconds(batch["started_at"])
            webhook = server.wait_for_events([batch_id], BATCH_ENDS, WEBHOOK_WAIT_S).get(batch_id)
            if webhook is None:
                outcome.checks.append(f"no batch webhook within {WEBHOOK_WAIT_S:g}s")
            else:
                outcome.webhook_s = webhook[0] - finished_at
            outcome.image_requests = server.files_served - requests_before
            outcome.most_in_flight = max(p.in_flight for p in outcome.polls)
            if outcome.most_in_flight > outcome.concurrency:
                outcome.checks.append(f"{outcome.most_in_flight} items in flight at once")
            outcome.checks += check_results(size, batch, results_of(api, batch))
            time.sleep(1.0)
            outcome.rss_end = sampler.sample()[1]
            # From the POST to the results file read and 1 s after: the whole life of the batch.
            mid = next(p.at for p in outcome.polls if p.done >= math.ceil(size / 2))
            for name in processes:
                outcome.peak[name] = sampler.peak(name, start, time.monotonic())
                outcome.peak_first_half[name] = sampler.peak(name, start, mid)
                outcome.peak_second_half[name] = sampler.peak(name, mid, end)
                outcome.by_tenth[name] = [
                    sampler.at(name, next(p.at for p in outcome.polls if p.done >= size * k / 10))
                    for k in range(1, 11)
                ]
            outcome.hwm = {name: high_water_mark(p.pid) for name, p in processes.items()}
            outcome.redis_end = used_memory(store)
            outcome.kept = keys_by_pattern(store)
            outcome.files_bytes = stored_bytes(stack.files_dir) - files_before
    finally:
        sampler.close()
        store.close()
    return outcome


def stored_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


# The report.


def report(outcomes: list[Outcome], images: list[bytes], job_concurrency: int | None) -> int:
    first = outcomes[0]
    print(
        f"image.transform batches: {len(images)} distinct {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEGs "
        f"({min(map(len, images)):,}-{max(map(len, images)):,} bytes) by URL from 127.0.0.1 -> "
        f"width {OUTPUT['width']} {OUTPUT['format']}; batch concurrency {first.concurrency}, "
        f"job concurrency {job_concurrency or 'default (4)'}; one fresh stack per batch size, "
        f"{WARM_UP_ITEMS}-item warm-up batch first"
    )
    print()
    print(
        f"{'items':>7}{'POST s':>8}{'wall s':>8}{'items/s':>9}{'run s':>8}{'run items/s':>12}"
        f"{'1st/2nd half items/s':>22}{'in flight':>10}{'webhook ms':>11}  {'check'}"
    )
    for o in outcomes:
        halves = "{:.0f} / {:.0f}".format(*o.half_rates())
        webhook = f"{1000 * o.webhook_s:.0f}" if o.webhook_s is not None else "-"
        check = (
            "ok: N lines, indexes unique, all succeeded" if not o.checks else "; ".join(o.checks)
        )
        print(
            f"{o.size:>7,}{o.post_s:>8.2f}{o.wall_s:>8.1f}{o.size / o.wall_s:>9.1f}{o.run_s:>8.1f}"
            f"{o.size / o.run_s:>12.1f}{halves:>22}{o.most_in_flight:>10}{webhook:>11}  {check}"
        )
    print()
    print(
        f"{'Redis':>7}{'queued B/item':>15}{'items list B/item':>19}{'peak B/item':>13}"
        f"{'kept B/item':>13}{'used_memory before/queued/peak/end MiB':>41}{'CPU ms/item':>13}"
    )
    for o in outcomes:
        before = o.redis_before
        print(
            f"{o.size:>7,}{(o.redis_queued - before) / o.size:>15.0f}{o.items_key / o.size:>19.0f}"
            f"{(o.redis_peak - before) / o.size:>13.0f}{(o.redis_end - before) / o.size:>13.0f}"
            f"{' / '.join(mib(v) for v in (before, o.redis_queued, o.redis_peak, o.redis_end)):>41}"
            f"{1000 * o.cpu_s['redis'] / o.size if 'redis' in o.cpu_s else math.nan:>13.2f}"
        )
    print()
    print(
        f"{'RSS MiB':<18}{'items':>7}{'before':>8}{'peak 1st half':>15}{'peak 2nd half':>15}"
        f"{'peak':>7}{'VmHWM':>7}{'end':>7}{'growth':>8}{'CPU ms/item':>13}{'cores':>7}"
    )
    for name in WATCHED:
        for o in outcomes:
            print(
                f"{name:<18}{o.size:>7,}{mib(o.rss_before[name]):>8}"
                f"{mib(o.peak_first_half[name]):>15}{mib(o.peak_second_half[name]):>15}"
                f"{mib(o.peak[name]):>7}{mib(o.hwm[name]):>7}{mib(o.rss_end[name]):>7}"
                f"{(o.rss_end[name] - o.rss_before[name]) / MiB:>+8.1f}"
                f"{1000 * o.cpu_s[name] / o.size:>13.2f}{o.cpu_s[name] / o.wall_s:>7.2f}"
            )
    if len(outcomes) > 1:
        small, big = outcomes[0], outcomes[-1]
        ratios = ", ".join(
            f"{name} {big.peak[name] / small.peak[name]:.2f}x "
            f"(VmHWM {big.hwm[name] / small.hwm[name]:.2f}x)"
            for name in WATCHED
        )
        print(f"\npeak RSS {big.size:,} vs {small.size:,} items: {ratios}")
    last = outcomes[-1]
    print(f"\nRSS MiB of the {last.size:,}-item batch at each tenth of its items done:")
    for name in WATCHED:
        print(f"  {name:<18}" + " ".join(f"{mib(v):>5}" for v in last.by_tenth[name]))
    print(
        f"\nwhat stays after the {last.size:,}-item batch (Redis keys added, by pattern; "
        f"MEMORY USAGE, bytes per item):"
    )
    added = []
    for pattern, (count, size) in last.kept.items():
        count_before, size_before = last.kept_before.get(pattern, (0, 0))
        if count != count_before or size != size_before:
            added.append((size - size_before, count - count_before, pattern))
    for size, count, pattern in sorted(added, reverse=True)[:5]:
        print(f"  {pattern:<44}{count:>+8,} keys{size / last.size:>10.0f} B/item")
    print(
        f"  storage (local:): {last.files_bytes / last.size:,.0f} B/item on disk (outputs, results "
        f"file); image fetches {last.image_requests:,} for {last.size:,} items"
    )
    for o in outcomes:
        for log, lines in o.log_lines.items():
            for text, count in lines.most_common(5):
                print(f"log {o.size:,} {log}: {count} x {text}")
    return 1 if any(o.checks for o in outcomes) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 10_000],
        metavar="N",
        help="batch sizes, one fresh stack each (default: 1000 10000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="C",
        help="items in flight per batch: PIXHOOK_BATCH_CONCURRENCY and the request's "
        "`concurrency` (default: the service's, 16)",
    )
    parser.add_argument(
        "--job-concurrency",
        type=int,
        metavar="J",
        help="PIXHOOK_JOB_CONCURRENCY, the jobs worker's max_jobs (default: the service's, 4)",
    )
    parser.add_argument("--images", type=int, default=4, help="distinct images (default 4)")
    parser.add_argument(
        "--timeout", type=float, default=1200.0, help="how long a batch may run (default 1200 s)"
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep each stack's dir (logs/, files/)"
    )
    args = parser.parse_args()
    if min(args.sizes) < 1:
        parser.error("--sizes must be at least 1")
    images = [make_image(seed) for seed in range(args.images)]
    outcomes = []
    with LocalServer(photos(images, cycle=True)) as server:
        for size in args.sizes:
            print(f"batch of {size:,} items ...", file=sys.stderr, flush=True)
            outcome = run_size(
                size,
                server,
                args.concurrency,
                args.job_concurrency,
                args.timeout,
                args.keep_workdir,
            )
            outcomes.append(outcome)
            print(f"  done in {outcome.wall_s:.1f} s", file=sys.stderr, flush=True)
    return report(outcomes, images, args.job_concurrency)


if __name__ == "__main__":
    sys.exit(main())
