"""A catalogue run: a CSV batch of `image.analyze` items with references, uploaded as one stream,
against a provider limit, with flaky and duplicate photos; and the same with SIGKILLs mid-run.

    .venv/bin/python -m bench.catalogue                                # 10,000 then 100,000
    .venv/bin/python -m bench.catalogue --sizes 10000 --kill           # kill worker and API once
    .venv/bin/python -m bench.catalogue --sizes 3000 --provider-limit 0   # what pixhook sustains

Run it as a module from the repository root. Each size gets a fresh stack
(`service.cli.devstack.local_stack`: embedded Redis, the API, `--workers` jobs workers and the
deliveries worker). The provider is `tests.support.openai_standin` (uvicorn in a thread of this
process), limited to `--provider-limit` requests/min in windows of about a second, and pixhook's
own provider rate is set to the same. Photos are distinct small JPEGs made on demand by an HTTP
server on 127.0.0.1 (`bench.receivers.LocalServer`): 5% of them answer 503 once, then 200; 1% of
the rows reuse another row's photo URL. The CSV (`sku,image_url,category`) is generated as it is
sent, as one multipart upload. bench/README.md defines the figures; the process exits 1 when an
invariant breaks (BenchError) or a goal is missed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil  # type: ignore[import-untyped]
import redis

from bench.api import Poll, batch_body, post_accepted, unix_seconds, wait_for_batch
from bench.batches import keys_by_pattern, used_memory
from bench.errors import BenchError
from bench.figures import mib
from bench.processes import Sampler, cpu_seconds, high_water_mark, redis_process, watch
from bench.provider_batch import MODEL, Limit, make_image, stand_in_limit
from bench.receivers import File, LocalServer
from bench.stack import log_problems, workdir
from service.cli.devstack import RunningStack, local_stack
from tests.support.openai_standin import API_KEY, Answer, OpenAIStandIn, Window

WARM_UP_ITEMS = 8
WARM_UP_BASE = 10_000_000  # photo numbers of the warm-up batch, beyond any catalogue's
CATEGORIES = ("footwear", "bags", "outerwear", "accessories")
BATCH_EVENTS = ("started", "progress", "completed")
WEBHOOK_WAIT_S = 60.0
KILL_AT = {"worker-jobs": 0.3, "api": 0.6}  # the share of items done when each is killed
PHOTO_PATH = re.compile(r"/photos/(\d+)\.jpg")


# The catalogue: rows, their photos, the duplicates and the flaky URLs.


def sku(row: int) -> str:
    return f"SKU-{row:07d}"


def is_duplicate(row: int) -> bool:
    """1% of the rows reuse another row's photo: rows 99, 199, 299, ..."""
    return row % 100 == 99


def photo_of(row: int) -> int:
    """The photo a row shows: its own, or for a duplicate row an earlier row's, half of them a
    few rows back (likely still running: single flight) and half far back (the cache)."""
    if not is_duplicate(row):
        return row
    rng = random.Random(row)
    back = rng.randrange(1, 16) if row % 200 == 99 else rng.randrange(16, row + 1)
    return row - back - (1 if is_duplicate(row - back) else 0)


def is_flaky(photo: int) -> bool:
    """5% of the photos answer 503 to their first request."""
    return photo % 20 == 7


def unique_photos(rows: int) -> int:
    return rows - sum(1 for row in range(99, rows, 100))


class Photos:
    """What the local server answers for `/photos/<n>.jpg`: photo n, made on demand (distinct by
    its number), or once a 503 for a flaky one. Counts requests per photo."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refused: set[int] = set()
        self.requests: Counter[int] = Counter()

    def __call__(self, path: str) -> File | int | None:
        match = PHOTO_PATH.fullmatch(path)
        if match is None:
            return None
        photo = int(match[1])
        with self._lock:
            self.requests[photo] += 1
            if is_flaky(photo) and photo not in self.refused:
                self.refused.add(photo)
                return 503
        return "image/jpeg", make_image(photo)

    def reset(self) -> None:
        with self._lock:
            self.refused.clear()
            self.requests.clear()


def csv_rows(rows: int, server: LocalServer) -> Iterator[bytes]:
    """The catalogue as CSV, a few hundred rows at a time, made as it is sent."""
    yield b"sku,image_url,category\n"
    for start in range(0, rows, 500):
        yield "".join(
            f"{sku(r)},{server.photo_url(photo_of(r))},{CATEGORIES[r % len(CATEGORIES)]}\n"
            for r in range(start, min(rows, start + 500))
        ).encode()


def multipart(spec: dict[str, Any], rows: Iterator[bytes], boundary: str) -> Iterator[bytes]:
    """A multipart/form-data body: the `batch` spec part first, then the `csv` part, streamed."""
    yield (
        f'--{boundary}\r\ncontent-disposition: form-data; name="batch"\r\n'
        f"content-type: application/json\r\n\r\n{json.dumps(spec)}\r\n"
        f'--{boundary}\r\ncontent-disposition: form-data; name="csv"; '
        f'filename="catalogue.csv"\r\ncontent-type: text/csv\r\n\r\n'
    ).encode()
    yield from rows
    yield f"\r\n--{boundary}--\r\n".encode()


# The provider: the stand-in, every reply after a latency, keeping only what the figures need.


class RequestLog(list[dict[str, Any]]):
    """What the stand-in appends each request to: its arrival and the digest of its image, not
    its body (100,000 base64 photos would hold ~0.5 GB in this process)."""

    def append(self, request: dict[str, Any]) -> None:
        image = ""
        for part in request["body"].get("messages", [{}])[0].get("content", []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                image = part["image_url"]["url"]
        digest = hashlib.sha256(image.encode()).hexdigest()[:16]
        super().append({"at": request["at"], "image": digest})


class Provider(OpenAIStandIn):
    """The stand-in answering every request alike: `reply` (the test suite scripts a list)."""

    requests: list[dict[str, Any]]

    def start(self) -> Provider:
        super().start()
        return self

    def __init__(self, reply: Answer) -> None:
        super().__init__()
        self.reply = reply
        self.requests = RequestLog()

    def _next(self) -> Answer:
        return self.reply

    def restart_count(self, limit: Limit | None) -> None:
        """Forget the requests so far; count (and, with a limit, limit) from now."""
        with self._lock:
            self.requests = RequestLog()
        if limit is None:
            self.count_requests()
        else:
            self.count_requests(limit.window_s, limit.per_minute)


# One catalogue on a fresh stack.


@dataclass(frozen=True)
class Config:
    limit: Limit | None  # None: the stand-in unlimited (to find what pixhook sustains)
    concurrency: int
    workers: int
    latency_s: float
    chunk_delay_s: float
    timeout_s: float
    kill: bool
    keep_workdir: bool
    headroom: float = 0.0  # pixhook's rate is this share below the provider's limit

    @property
    def rate(self) -> int:
        return int(self.limit.per_minute * (1 - self.headroom)) if self.limit else 600_000

    def stack_env(self, provider: Provider) -> dict[str, str]:
        return {
            "PIXHOOK_OPENAI_BASE_URL": provider.base_url,
            "PIXHOOK_OPENAI_API_KEY": API_KEY,
            "PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": str(self.rate),
            "PIXHOOK_PROVIDER_BURST": "1",
            "PIXHOOK_PROVIDER_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_JOB_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_BATCH_CONCURRENCY": str(self.concurrency),
            "PIXHOOK_CLIENT_BATCH_CONCURRENCY": str(max(64, self.concurrency)),
        }


@dataclass
class Kill:
    name: str
    at_done: int  # items done at the last poll before it
    in_flight: int  # items in flight at that poll: the most provider calls the kill can cut
    calls_before: int  # provider requests the stand-in had received
    down_s: float = 0.0  # SIGKILL -> started again (the API: ready again)


@dataclass
class Outcome:
    rows: int
    unique: int
    batch_id: str = ""
    concurrency: int = 0
    post_at: float = 0.0  # wall clock, just before the POST
    post_s: float = 0.0
    started_at: float = 0.0  # the batch record's, wall clock
    finished_at: float = 0.0
    wall_s: float = 0.0  # POST -> the first poll that saw the batch ended
    first_result_s: float = math.nan  # POST -> the first poll that saw an item done
    webhooks: dict[str, float] = field(default_factory=dict)  # event type -> first arrival
    polls: list[Poll] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)  # failed codes retried by POST .../retry
    redis_before: int = 0
    redis_queued: int = 0
    redis_peak: int = 0
    redis_end: int = 0
    rss_before: dict[str, int] = field(default_factory=dict)
    rss_peak: dict[str, int] = field(default_factory=dict)
    hwm: dict[str, int] = field(default_factory=dict)
    calls: int = 0  # billed by the stand-in (answered)
    requests: int = 0  # arrived at the stand-in, 429s included
    distinct_images: int = 0  # distinct image digests the stand-in was sent
    windows: list[Window] = field(default_factory=list)
    arrivals: tuple[float, float] = (math.nan, math.nan)
    photo_requests: Counter[int] = field(default_factory=Counter)
    refused_503: int = 0
    lines: int = 0
    results_bytes: int = 0
    csv_rows: int = 0
    csv_bytes: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    cached: int = 0
    kills: list[Kill] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # POST -> finished, per process
    kept_before: dict[str, tuple[int, int]] = field(default_factory=dict)  # pattern -> keys, B
    kept: dict[str, tuple[int, int]] = field(default_factory=dict)
    progress_events: int = 0
    log_lines: dict[str, Counter[str]] = field(default_factory=dict)


def watched(config: Config) -> dict[str, str]:
    names = {"api": "api", "jobs worker": "worker-jobs"}
    names |= {f"jobs worker {n}": f"worker-jobs-{n}" for n in range(2, config.workers + 1)}
    return names | {"deliveries worker": "worker-deliveries"}


def run(
    config: Config, rows: int, server: LocalServer, photos: Photos, provider: Provider
) -> Outcome:
    with workdir(f"pixhook-bench-catalogue-{rows}-", config.keep_workdir) as path:
        with local_stack(path, config.stack_env(provider)) as stack:
            for number in range(2, config.workers + 1):  # start_worker would reuse the name
                stack.processes.start(f"worker-jobs-{number}", "worker", "--queue", "jobs")
            server.secret = stack.client.webhook_secret
            outcome = measure(config, rows, stack, server, photos, provider)
        outcome.log_lines = log_problems(path / "logs")
    return outcome


def measure(
    config: Config,
    rows: int,
    stack: RunningStack,
    server: LocalServer,
    photos: Photos,
    provider: Provider,
) -> Outcome:
    outcome = Outcome(rows, unique_photos(rows))
    store = redis.Redis.from_url(stack.redis_url)
    auth = {"authorization": f"Bearer {stack.client.api_key}"}
    sampler = None
    try:
        with httpx.Client(base_url=stack.api_url, headers=auth, timeout=120) as api:
            # Warm-up (untimed, the stand-in unlimited): imports, connections, every worker up.
            provider.restart_count(None)
            inputs = ({"image": {"url": server.photo_url(WARM_UP_BASE + i)}} for i in range(8))
            warm_up = post_accepted(api, "/v1/batches", batch_body("image.analyze", inputs))
            wait_for_batch(api, stack, warm_up["id"], 60)
            if not config.kill:
                sampler = Sampler(watch(stack, watched(config)), every_s=0.1)
            time.sleep(2.0)  # the shared rate's bucket full again
            photos.reset()
            calls_before = provider.paid_calls(MODEL)
            outcome.redis_before = used_memory(store)
            outcome.kept_before = keys_by_pattern(store)
            if sampler is not None:
                outcome.rss_before = sampler.sample()[1]
            provider.restart_count(config.limit)
            cpu = cpu_watch(stack, config)
            cpu_before = {name: cpu_seconds(p) for name, p in cpu.items()}
            post(api, rows, server, outcome)
            outcome.redis_queued = used_memory(store)
            batch = follow(config, api, stack, store, provider, outcome)
            if batch["counts"]["failed"]:
                batch = retry_failed(config, api, stack, store, provider, outcome, batch)
            if not config.kill:
                outcome.cpu_s = {n: cpu_seconds(p) - cpu_before[n] for n, p in cpu.items()}
            outcome.counts, outcome.summary = batch["counts"], batch["summary"]
            outcome.started_at = unix_seconds(batch["started_at"])
            outcome.finished_at = unix_seconds(batch["finished_at"])
            outcome.windows = provider.window_counts()
            provider.count_requests()  # counted, no longer limited
            arrived = [r["at"] for r in provider.requests]
            outcome.requests = len(arrived)
            outcome.arrivals = (min(arrived, default=math.nan), max(arrived, default=math.nan))
            outcome.distinct_images = len({r["image"] for r in provider.requests})
            outcome.calls = provider.paid_calls(MODEL) - calls_before
            outcome.photo_requests = Counter(photos.requests)
            outcome.refused_503 = len(photos.refused)
            ended = server.wait_for_events([outcome.batch_id], ["batch.completed"], WEBHOOK_WAIT_S)
            if not ended:
                raise BenchError("no batch.completed webhook")
            for arrival, kind in server.events.get(outcome.batch_id, []):
                outcome.webhooks.setdefault(kind, arrival)
                outcome.progress_events += kind == "batch.progress"
            read_results(api, batch, outcome)
            read_results_csv(api, outcome)
            time.sleep(1.0)
            outcome.redis_end = used_memory(store)
            outcome.kept = keys_by_pattern(store)
            if sampler is not None:
                outcome.rss_peak = {
                    name: sampler.peak(name, 0, time.monotonic()) for name in watched(config)
                }
                processes = watch(stack, watched(config))
                outcome.hwm = {name: high_water_mark(p.pid) for name, p in processes.items()}
    finally:
        if sampler is not None:
            sampler.close()
        store.close()
    return outcome


def cpu_watch(stack: RunningStack, config: Config) -> dict[str, psutil.Process]:
    """The processes whose CPU the report shows: the stack's, Redis, and this one (the stand-in
    provider and the photo server run in it)."""
    processes = watch(stack, watched(config))
    redis_server = redis_process(urlsplit(stack.redis_url).port or 0)
    if redis_server is not None:
        processes["redis"] = redis_server
    return processes | {"bench (provider, photos)": psutil.Process()}


def post(api: httpx.Client, rows: int, server: LocalServer, outcome: Outcome) -> None:
    """The catalogue as one streamed multipart upload."""
    spec = {
        "type": "image.analyze",
        "input": {"image": {"url": "{image_url}"}, "provider": "openai"},
        "reference_column": "sku",
        "metadata_columns": ["category"],
        "webhook_url": server.hook_url,
        "webhook_events": list(BATCH_EVENTS),
    }
    boundary = "catalogue-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:16]
    body = multipart(spec, csv_rows(rows, server), boundary)
    outcome.post_at = time.time()
    started = time.monotonic()
    response = api.post(
        "/v1/batches",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    outcome.post_s = time.monotonic() - started
    if response.status_code != 202:
        raise BenchError(f"POST /v1/batches: {response.status_code} {response.text[:300]}")
    created = response.json()
    if created["counts"]["total"] != rows:
        raise BenchError(f"the batch took {created['counts']['total']} items of {rows}")
    outcome.batch_id, outcome.concurrency = created["id"], created["concurrency"]


def follow(
    config: Config,
    api: httpx.Client,
    stack: RunningStack,
    store: redis.Redis,
    provider: Provider,
    outcome: Outcome,
) -> dict[str, Any]:
    """Poll the batch to its end (every 200 ms), Redis memory alongside; with `kill`, SIGKILL
    the jobs worker, then the API, once each as the share of items done passes KILL_AT, and
    start each again at once. The API's downtime is waited out."""
    deadline = time.monotonic() + config.timeout_s
    kills = dict(KILL_AT) if config.kill else {}
    start = time.monotonic() - (time.time() - outcome.post_at)
    while True:
        exited = stack.processes.exited()
        if exited:
            raise BenchError(f"stack processes exited during the run: {exited}")
        try:
            batch: dict[str, Any] = api.get(f"/v1/batches/{outcome.batch_id}").json()
        except httpx.TransportError as exc:
            raise BenchError(f"the API did not answer a poll: {exc!r}") from exc
        counts = batch["counts"]
        done = counts["succeeded"] + counts["failed"] + counts["canceled"]
        poll = Poll(time.monotonic(), done, counts["in_flight"])
        outcome.polls.append(poll)
        if done and math.isnan(outcome.first_result_s):
            outcome.first_result_s = poll.at - start
        outcome.redis_peak = max(outcome.redis_peak, used_memory(store))
        if batch["status"] != "running":
            outcome.wall_s = poll.at - start
            return batch
        for name, share in list(kills.items()):
            if done >= share * outcome.rows:
                del kills[name]
                outcome.kills.append(kill(stack, name, poll, len(provider.requests)))
        if time.monotonic() > deadline:
            raise BenchError(f"batch still running after {config.timeout_s:g}s: {counts}")
        time.sleep(0.2)


def kill(stack: RunningStack, name: str, poll: Poll, calls: int) -> Kill:
    """SIGKILL one process of the stack and start it again under its name."""
    record = Kill(name, poll.done, poll.in_flight, calls)
    process = stack.processes.processes[name]
    killed_at = time.monotonic()
    process.send_signal(signal.SIGKILL)
    process.wait()
    if name == "api":
        port = urlsplit(stack.api_url).port
        assert port is not None
        stack.processes.start_api(port)
    else:
        stack.processes.start(name, "worker", "--queue", name.removeprefix("worker-"))
    record.down_s = time.monotonic() - killed_at
    print(
        f"  SIGKILL {name} at {poll.done:,} items done ({poll.in_flight} in flight); "
        f"running again after {record.down_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return record


def retry_failed(
    config: Config,
    api: httpx.Client,
    stack: RunningStack,
    store: redis.Redis,
    provider: Provider,
    outcome: Outcome,
    batch: dict[str, Any],
) -> dict[str, Any]:
    """Some items failed after their own attempts: one POST .../retry, and follow it again."""
    outcome.retried = dict(batch["summary"]["by_error_code"])
    print(f"  {batch['counts']['failed']} items failed: retrying them", file=sys.stderr)
    post_accepted(api, f"/v1/batches/{outcome.batch_id}/retry", b"{}")
    return follow(replace(config, kill=False), api, stack, store, provider, outcome)


def read_results(api: httpx.Client, batch: dict[str, Any], outcome: Outcome) -> None:
    """Stream the results file: one line per row, each index once, its reference the row's SKU
    and its metadata the row's category."""
    seen = bytearray(outcome.rows)
    with api.stream("GET", batch["results"]["url"]) as response:
        if response.status_code != 200:
            raise BenchError(f"results file: {response.status_code}")
        for text in response.iter_lines():
            outcome.results_bytes += len(text.encode()) + 1
            line = json.loads(text)
            index = line["index"]
            if not 0 <= index < outcome.rows or seen[index]:
                raise BenchError(f"results file: index {index} out of range or repeated")
            seen[index] = 1
            if line["reference"] != sku(index):
                raise BenchError(f"results line {index}: reference {line['reference']!r}")
            if line["metadata"] != {"category": CATEGORIES[index % len(CATEGORIES)]}:
                raise BenchError(f"results line {index}: metadata {line['metadata']!r}")
            outcome.lines += 1
            outcome.statuses[line["status"]] += 1
            outcome.attempts[int(line["attempts"])] += 1
            if line["error"]:
                outcome.errors[str(line["error"]["code"])] += 1
            if line["output"] and line["output"]["provider"]["cached"]:
                outcome.cached += 1
    if outcome.lines != outcome.rows:
        raise BenchError(f"results file: {outcome.lines} lines for {outcome.rows} rows")


def read_results_csv(api: httpx.Client, outcome: Outcome) -> None:
    """Stream results.csv and join it to the generated SKUs: every SKU exactly once, at its
    row's index, succeeded."""
    seen = bytearray(outcome.rows)
    with api.stream("GET", f"/v1/batches/{outcome.batch_id}/results.csv") as response:
        if response.status_code != 200:
            raise BenchError(f"results.csv: {response.status_code}")

        def lines() -> Iterator[str]:
            for text in response.iter_lines():
                outcome.csv_bytes += len(text.encode()) + 1
                yield text

        for row in csv.DictReader(lines()):
            index = int(row["index"])
            if not row["reference"].startswith("SKU-"):
                raise BenchError(f"results.csv: reference {row['reference']!r}")
            row_of_sku = int(row["reference"].removeprefix("SKU-"))
            if row_of_sku != index or not 0 <= index < outcome.rows or seen[index]:
                raise BenchError(f"results.csv: {row['reference']} at index {index}, or again")
            seen[index] = 1
            outcome.csv_rows += 1
            if row["status"] != "succeeded":
                raise BenchError(f"results.csv: {row['reference']} {row['status']}")
    if outcome.csv_rows != outcome.rows:
        raise BenchError(f"results.csv: {outcome.csv_rows} SKUs for {outcome.rows} rows")


# The checks and the report.


def check(config: Config, outcome: Outcome) -> None:
    """The invariants: every row's item ended once, the counts add up, the provider saw each
    unique photo once (with kills: at most the calls in flight at the kills more)."""
    n, counts = outcome.rows, outcome.counts
    if counts["succeeded"] + counts["failed"] + counts["canceled"] != n or counts["total"] != n:
        raise BenchError(f"counts do not add up to {n}: {counts}")
    if outcome.statuses != Counter({"succeeded": n}):
        raise BenchError(f"items not all succeeded after the retry: {dict(outcome.statuses)}")
    if outcome.distinct_images != outcome.unique:
        raise BenchError(
            f"the provider saw {outcome.distinct_images} distinct photos, not {outcome.unique}"
        )
    slack = sum(k.in_flight for k in outcome.kills if k.name.startswith("worker"))
    if not outcome.unique <= outcome.calls <= outcome.unique + slack:
        raise BenchError(
            f"{outcome.calls} provider calls for {outcome.unique} unique photos "
            f"(at most {slack} more allowed: calls in flight at the kills)"
        )
    flaky = sum(1 for p in outcome.photo_requests if is_flaky(p))
    if outcome.refused_503 != flaky:
        raise BenchError(f"{outcome.refused_503} photos answered 503 of {flaky} flaky ones")


def minimum_s(limit: Limit | None, unique: int) -> float:
    """The earliest the last provider request may arrive after the first under the limit."""
    return limit.minimum_s(unique) if limit else math.nan


def report_size(config: Config, o: Outcome) -> bool:
    """Print one size's figures; whether every goal was met."""
    n, limit = o.rows, config.limit
    minimum = minimum_s(limit, o.unique)
    run_s = o.finished_at - o.started_at
    post_to_end = o.finished_at - o.post_at
    ratio = post_to_end / minimum if limit else math.nan
    duplicates = n - o.unique
    per_photo = o.calls / o.unique
    accepted = [w.arrived - w.refused for w in o.windows]
    refused = sum(w.refused for w in o.windows)
    fetches = sum(o.photo_requests.values())
    first_hook = o.webhooks.get("batch.started", math.nan) - o.post_at
    # The kill run is about the accounting (check() holds it); the clean runs about the goals.
    goals = o.statuses["succeeded"] == n and not o.retried
    if not config.kill:
        goals = goals and per_photo == 1.0 and (limit is None or ratio <= 1.05)
    print(
        f"\n== {n:,} rows: {o.unique:,} unique photos, {duplicates:,} duplicate rows, "
        f"{o.refused_503:,} photos answered 503 once =="
    )
    print(
        f"upload: POST (streamed CSV, {n:,} rows) answered in {o.post_s:.1f} s, "
        f"{n / o.post_s:,.0f} rows/s; batch concurrency {o.concurrency}"
    )
    if limit:
        print(
            f"minimum the limit allows: (U - P) * W / P = ({o.unique} - {limit.per_window}) * "
            f"{limit.window_s:g} / {limit.per_window} = {minimum:.1f} s"
        )
        print(
            f"completion: POST -> finished_at {post_to_end:.1f} s = "
            f"{ratio:.3f} x minimum (goal <= 1.05: {'met' if ratio <= 1.05 else 'MISSED'}); "
            f"started_at -> finished_at {run_s:.1f} s ({run_s / minimum:.3f} x)"
        )
        print(
            f"items/s: {n / post_to_end:.1f} (POST -> finished), {n / run_s:.1f} (run); "
            f"the limit's: {n / minimum:.1f} items/s ({o.unique / minimum:.1f} unique photos/s)"
        )
    else:
        print(
            f"what pixhook sustains, the provider unlimited: {n / post_to_end:.1f} items/s "
            f"(POST -> finished_at {post_to_end:.1f} s), {n / run_s:.1f} over the run"
        )
    print(
        f"at the stand-in: {o.requests:,} requests, {refused:,} answered 429, {o.calls:,} "
        f"answered; first -> last request {o.arrivals[1] - o.arrivals[0]:.1f} s; per window "
        f"max {max(accepted, default=0)}, median "
        f"{sorted(accepted)[len(accepted) // 2] if accepted else 0}"
    )
    print(
        f"provider calls per unique photo: {o.calls:,} / {o.unique:,} = {per_photo:.4f} "
        f"(goal 1.00); distinct photos the provider saw {o.distinct_images:,}; "
        f"answers from the cache {o.cached:,} ({duplicates:,} duplicate rows; the rest of "
        f"the duplicates shared a call in flight)"
    )
    print(
        f"photo fetches: {fetches:,} for {n:,} rows ({o.refused_503:,} answered 503 once, "
        f"then fetched again by the fetcher)"
    )
    retried = (
        f"; {sum(o.retried.values())} retried with POST /retry: {o.retried}" if o.retried else ""
    )
    print(
        f"items needing a human: {o.statuses['failed'] + o.statuses['canceled']} failed or "
        f"canceled at the end (goal 0){retried}; attempts per item "
        f"{dict(sorted(o.attempts.items()))}; error codes {dict(o.errors) or 'none'}"
    )
    print(
        f"time to first webhook (POST -> batch.started): {first_hook:.2f} s; "
        f"POST -> first item done (200 ms polls): {o.first_result_s:.2f} s; "
        f"finished_at -> batch.completed "
        f"{1000 * (o.webhooks.get('batch.completed', math.nan) - o.finished_at):.0f} ms; "
        f"batch.progress events {o.progress_events}"
    )
    print(
        f"Redis used_memory: before {mib(o.redis_before)} MiB, queued {mib(o.redis_queued)}, "
        f"peak {mib(o.redis_peak)}, after {mib(o.redis_end)}; per item: queued "
        f"{(o.redis_queued - o.redis_before) / n:.0f} B, peak "
        f"{(o.redis_peak - o.redis_before) / n:.0f} B, after (kept for the job retention) "
        f"{(o.redis_end - o.redis_before) / n:.0f} B"
    )
    print(
        f"results: {o.lines:,} JSONL lines ({o.results_bytes / n:.0f} B/item, "
        f"{mib(o.results_bytes)} MiB); results.csv {o.csv_rows:,} rows "
        f"({o.csv_bytes / n:.0f} B/item): every SKU exactly once at its index, joined: ok"
    )
    added = sorted(
        (
            (size - o.kept_before.get(pattern, (0, 0))[1], count, pattern)
            for pattern, (count, size) in o.kept.items()
        ),
        reverse=True,
    )
    print(
        "what stays in Redis (keys by pattern, MEMORY USAGE added per item): "
        + ", ".join(f"{pattern} {size / n:.0f} B" for size, _, pattern in added[:4])
    )
    if o.rss_peak:
        print("RSS MiB            before   peak  VmHWM")
        for name in o.rss_peak:
            print(
                f"  {name:<17} {mib(o.rss_before[name]):>6} {mib(o.rss_peak[name]):>6} "
                f"{mib(o.hwm[name]):>6}"
            )
    if o.cpu_s:
        print(
            "CPU s/item (cores), POST -> finished: "
            + ", ".join(
                f"{name} {1000 * cpu / n:.1f} ms ({cpu / post_to_end:.2f})"
                for name, cpu in o.cpu_s.items()
            )
        )
    for kill_ in o.kills:
        print(
            f"SIGKILL {kill_.name}: at {kill_.at_done:,} items done, {kill_.in_flight} in "
            f"flight, {kill_.calls_before:,} provider requests so far; back in {kill_.down_s:.1f} s"
        )
    if o.kills:
        slack = sum(k.in_flight for k in o.kills if k.name.startswith("worker"))
        print(
            f"after the kills: {o.lines:,} result lines for {n:,} rows, each index and SKU "
            f"once, none repeated; counts {o.counts}; provider calls {o.calls:,} = unique "
            f"photos {o.unique:,} + {o.calls - o.unique} (at most {slack}: in flight at the "
            f"jobs worker's kill)"
        )
    for log, lines in o.log_lines.items():
        for text, count in lines.most_common(4):
            print(f"  log {log}: {count} x {text}")
    return goals


def report_ratios(outcomes: list[Outcome]) -> bool:
    first, last = outcomes[0], outcomes[-1]
    if len(outcomes) < 2 or not first.rss_peak:
        return True
    parts, flat = [], True
    for name in first.rss_peak:
        ratio = last.rss_peak[name] / first.rss_peak[name]
        hwm = last.hwm[name] / first.hwm[name]
        flat = flat and ratio <= 1.1
        parts.append(f"{name} {ratio:.2f}x (VmHWM {hwm:.2f}x)")
    print(
        f"\npeak RSS {last.rows:,} vs {first.rows:,} items (goal <= 1.1x: "
        f"{'met' if flat else 'MISSED'}): " + ", ".join(parts)
    )
    return flat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--provider-limit",
        type=int,
        default=2700,
        metavar="RPM",
        help="requests/min the stand-in allows and pixhook is set to (default 2700: 45/s); 0: "
        "unlimited, to find what pixhook sustains",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=48,
        help="PIXHOOK_PROVIDER_CONCURRENCY, _JOB_CONCURRENCY and _BATCH_CONCURRENCY (default 48)",
    )
    parser.add_argument(
        "--headroom",
        type=float,
        default=0.03,
        help="set pixhook's rate this share below the provider's limit (default 0.03): at the "
        "limit exactly, jitter puts one request too many into a provider's window now and then",
    )
    parser.add_argument("--workers", type=int, default=2, help="jobs workers (default 2)")
    parser.add_argument(
        "--latency", type=float, default=0.2, help="seconds before each reply (default 0.2)"
    )
    parser.add_argument(
        "--chunk-delay", type=float, default=0.005, help="seconds before each piece (0.005)"
    )
    parser.add_argument("--kill", action="store_true", help="SIGKILL the jobs worker and the API")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per batch (default 3600 s)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep each stack's dir")
    args = parser.parse_args()
    if min(args.sizes) < 200 or args.concurrency < 1 or args.workers < 1:
        parser.error("sizes of at least 200; --concurrency and --workers at least 1")
    limit = stand_in_limit(args.provider_limit, None) if args.provider_limit else None
    config = Config(
        limit,
        args.concurrency,
        args.workers,
        args.latency,
        args.chunk_delay,
        args.timeout,
        args.kill,
        args.keep_workdir,
        args.headroom,
    )
    reply = Answer(delay_s=args.latency, chunk_delay_s=args.chunk_delay, chunk_chars=64)
    print(
        "image.analyze catalogue: CSV upload (sku,image_url,category) with reference_column sku; "
        "96x96 JPEGs by URL, 5% answering 503 once, 1% of rows another row's photo"
    )
    print(
        "provider: the OpenAI stand-in, "
        + (
            f"{limit.per_minute}/min as {limit.per_window} per {limit.window_s:g} s window"
            if limit
            else "unlimited"
        )
        + f"; reply after {1000 * args.latency:.0f} ms in 64-char pieces every "
        f"{1000 * args.chunk_delay:.0f} ms"
    )
    print(
        f"pixhook: PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE={config.rate} BURST=1, provider/job/batch "
        f"concurrency {args.concurrency}, {args.workers} jobs worker(s)"
        + (", SIGKILL of a jobs worker and the API mid-run" if args.kill else "")
    )
    photos = Photos()
    outcomes, met = [], True
    provider = Provider(reply).start()
    try:
        with LocalServer(photos) as server:
            for rows in args.sizes:
                print(f"catalogue of {rows:,} rows ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                outcome = run(config, rows, server, photos, provider)
                done_s = time.monotonic() - started
                print(f"  done in {done_s:.0f} s", file=sys.stderr, flush=True)
                check(config, outcome)
                met = report_size(config, outcome) and met
                outcomes.append(outcome)
    finally:
        provider.close()
    if not config.kill:
        met = report_ratios(outcomes) and met
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
