"""The operator console with 100,000 jobs in Redis: how long each page takes, client side.

    .venv/bin/python -m bench.console [--jobs 100000] [--rounds 20] [--seed 1] [--keep-workdir]

Starts its own Redis on a free port and the API alone (no workers: nothing runs the seeded jobs or
retries their deliveries), seeds clients, endpoints, jobs and deliveries straight into Redis with
the service's own stores, signs in as the operator over HTTP, then fetches each console page
`--rounds` times. Goal: every page's p95 under 200 ms. bench/README.md defines the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import random
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

import httpx
import redis
from redis.asyncio import Redis

from bench.errors import BenchError
from bench.figures import MiB, percentile
from bench.stack import print_log_tails, workdir
from service.cli.devstack import EmbeddedRedis, ServiceProcesses, StackError, free_port
from service.clients.store import ClientStore, NewClient
from service.config import Settings
from service.ids import new_id
from service.jobs.index import INDEXED_STATUSES, JobIndex
from service.jobs.model import TERMINAL, Job, JobStatus
from service.jobs.store import JobStore
from service.jobs.views import job_view
from service.publishing import event_id_for
from service.storage import Storage, job_file_key, open_storage
from service.tasks import JOB_TYPES
from webhooks import (
    Attempt,
    Delivery,
    DeliveryMetrics,
    DeliveryStore,
    Endpoint,
    EndpointStore,
    Event,
    Outcome,
    RetrySchedule,
    new_endpoint_id,
    utc_timestamp,
    webhook_headers,
)

T = TypeVar("T")
GOAL_MS = 200.0
# The headers every attempt sends besides its signature, as the attempt log keeps them.
SENT_WITH = {"content-type": "application/json", "user-agent": "pixhook-webhooks/0.1"}
PASSWORD = "bench-console-password"  # a throwaway stack on loopback
CLIENTS = {"acme": 0.40, "globex": 0.25, "initech": 0.15, "umbrella": 0.12, "hooli": 0.08}
TYPES = {"image.transform": 0.60, "image.analyze": 0.30, "image.generate": 0.10}
ENDED = {"succeeded": 0.93, "failed": 0.065, "canceled": 0.005}
RUN_S = {"image.transform": (0.1, 1.5), "image.analyze": (0.3, 4.0), "image.generate": (5.0, 30.0)}
SPREAD_S = 3 * 86400  # created_at over the last three days
LIVE_S = 3600  # jobs newer than this go through create -> running -> end, the worker's path
QUEUED, RUNNING = 0.01, 0.001  # shares of all jobs, the newest ones: a backlog
HOOKED = 0.02  # jobs with a webhook delivery: 2,000 of 100,000
ENDPOINTS = {"cms": ("job.*",), "alerts": ("job.failed",)}  # per client: role -> event types
HEALTH_SAMPLES = 1000  # EndpointStore's samples_kept: a full window, as after 1,000 attempts
CHUNK = 500  # records written concurrently
PIPELINED = 2000  # ended jobs written per pipeline
DEEP_PAGES = 10
JOB_FIELDS = [f.name for f in fields(Job)]
SCHEDULE = RetrySchedule()  # the default: a dead delivery spent every attempt of it
DEAD_AFTER = SCHEDULE.max_attempts


@dataclass(frozen=True)
class Hook:
    """A job's planned webhook delivery: where it goes, how many attempts, how they end."""

    url: str
    endpoint_id: str | None
    secret: str
    attempts: int
    outcome: Outcome  # "retry": still pending after its last attempt here


@dataclass
class Seeded:
    clients: list[NewClient]
    jobs: list[Job]
    hooks: dict[str, Hook]
    live: int  # jobs that went through create -> running -> end
    attempts: int
    seconds: dict[str, float]


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def in_chunks(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await the calls CHUNK at a time (one connection each), in order."""
    done: list[T] = []
    for chunk in chunked(list(calls), CHUNK):
        done += await asyncio.gather(*chunk)
    return done


# What the jobs look like: inputs normalised by each job type's own parser.


def job_inputs(settings: Settings) -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, Any]] = {
        "image.transform": {"width": 512, "height": 512, "format": "webp", "quality": 80},
        "image.analyze": {},
        "image.generate": {"prompt": "a red bicycle leaning on a blue wall, morning light"},
    }
    return {name: JOB_TYPES[name].parse_input(params, settings) for name, params in raw.items()}


# service/imaging/analysis.py's shape, for a 12 MP photo.
ANALYSIS: dict[str, Any] = {
    "width": 4032, "height": 3024, "format": "JPEG", "mode": "RGB", "has_alpha": False,
    "animated": False, "frames": 1, "brightness": 0.482, "contrast": 0.213,
    "dominant_colors": [{"hex": "#3a5f7d", "share": 0.41}, {"hex": "#d9c7a8", "share": 0.22},
                        {"hex": "#1e2426", "share": 0.17}, {"hex": "#8fa3b0", "share": 0.12},
                        {"hex": "#b5452f", "share": 0.08}],
    "sharpness": 143.2, "noise": 2.31, "quality": {"grade": "good", "reasons": []},
    "phash": "c3a1f0e4b2d59687", "dhash": "0f1e3c7870e1c387",
}  # fmt: skip
ERRORS = {
    "image.transform": [("IMAGE_FETCH_FAILED", "the image URL answered 404"),
                        ("INVALID_IMAGE", "cannot identify image file")],
    "image.analyze": [("IMAGE_FETCH_TIMEOUT", "the image URL did not answer within 20 s")],
    "image.generate": [("PROVIDER_UNAVAILABLE", "the provider answered 503 three times"),
                       ("PROVIDER_REJECTED", "the provider refused the prompt")],
}  # fmt: skip


def ended_fields(job: Job, rng: random.Random) -> dict[str, Any]:
    if job.status == "failed":
        code, message = rng.choice(ERRORS[job.type])
        return {"error": {"code": code, "message": message}}
    if job.status != "succeeded":
        return {}
    if job.type == "image.analyze":
        return {"output": {"analysis": ANALYSIS}}
    name, extension = ("default", "webp") if job.type == "image.transform" else ("image-0", "png")
    key = job_file_key(job.client_id, job.id, job.created_at, f"{name}.{extension}")
    image: dict[str, Any] = {
        "name": name,
        "key": key,
        "media_type": f"image/{extension}",
        "format": extension,
    }
    image |= {"width": 512, "height": 384, "bytes": rng.randrange(8_000, 60_000)}
    if job.type == "image.transform":
        return {"output": {"images": [image]}}
    provider = {"model": job.input["model"], "latency_ms": 9120.4, "attempts": 1}
    return {"output": {"images": [image], "provider": provider}}


def distinct_moments(count: int, now: float, rng: random.Random) -> list[float]:
    """`count` creation times over SPREAD_S, oldest first, each its own index score (µs)."""
    low, high = int((now - SPREAD_S) * 1e6), int((now - 60) * 1e6)
    moments: dict[int, float] = {}
    while len(moments) < count:
        moment = rng.randrange(low, high) / 1e6
        moments.setdefault(int(moment * 1_000_000), moment)
    return sorted(moments.values())


def statuses(count: int, rng: random.Random) -> list[JobStatus]:
    """Oldest first: ended jobs, then the running ones, then the queued backlog."""
    running, queued = int(count * RUNNING), int(count * QUEUED)
    ended = rng.choices(list(ENDED), weights=list(ENDED.values()), k=count - running - queued)
    return [*ended, *["running"] * running, *["queued"] * queued]  # type: ignore[list-item]


def plan_jobs(
    count: int, clients: list[NewClient], settings: Settings, rng: random.Random
) -> list[Job]:
    inputs, now = job_inputs(settings), time.time()
    client_ids = rng.choices(
        [c.client.id for c in clients], weights=list(CLIENTS.values()), k=count
    )
    types = rng.choices(list(TYPES), weights=list(TYPES.values()), k=count)
    jobs = []
    for n, (created_at, status) in enumerate(
        zip(distinct_moments(count, now, rng), statuses(count, rng), strict=True)
    ):
        job_type, client_id = types[n], client_ids[n]
        params = dict(inputs[job_type])
        if JOB_TYPES[job_type].image == "required":
            url = f"https://images.example.net/{client_id}/{n}.jpg"
            params = {"image": {"source": "url", "url": url}, **params}
        started_at = created_at + rng.uniform(0.02, 1.5)
        finished_at = started_at + rng.uniform(*RUN_S[job_type])
        job = Job(
            id=new_id("job"),
            type=job_type,
            client_id=client_id,
            input=params,
            input_key=None,
            created_at=created_at,
            status=status,
            started_at=started_at if status in ("running", "succeeded", "failed") else None,
            finished_at={
                "canceled": started_at,
                "succeeded": finished_at,
                "failed": finished_at,
            }.get(status),
            metadata={"order": f"ord-{n}", "source": "cms"},
            sequence={"queued": 0, "running": 1, "canceled": 1}.get(status, 2),
        )
        jobs.append(replace(job, **ended_fields(job, rng)))
    return jobs


# Seeding, through the stores the API and workers use.


async def seed(settings: Settings, count: int, rng: random.Random) -> Seeded:
    db = Redis.from_url(settings.redis.url)
    jobs_store = JobStore(db, retention_s=settings.jobs.retention_s)
    deliveries = DeliveryStore(db, retention_s=int(settings.jobs.retention_s))
    endpoints = EndpointStore(db, settings.sealer)
    seconds: dict[str, float] = {}
    try:
        start = time.monotonic()
        clients = [await ClientStore(db).create(name) for name in CLIENTS]
        cms = await seed_endpoints(endpoints, clients, rng)
        seconds["clients, endpoints"] = time.monotonic() - start
        start = time.monotonic()
        jobs = plan_jobs(count, clients, settings, rng)
        jobs, hooks = plan_hooks(jobs, clients, cms, rng)
        live = await seed_jobs(db, jobs_store, jobs, settings.jobs.retention_s)
        seconds["jobs"] = time.monotonic() - start
        start = time.monotonic()
        storage = open_storage(
            settings.storage.location, settings.api.secret_key, 3600, settings.api.public_url
        )
        by_id = {job.id: job for job in jobs}
        ids = await in_chunks(
            seed_delivery(deliveries, jobs_store, by_id[job_id], hook, storage, settings)
            for job_id, hook in hooks.items()
        )
        planned = dict(zip(ids, hooks.values(), strict=True))
        attempts = await attempt_all(deliveries, DeliveryMetrics(db), endpoints, planned, rng)
        seconds["deliveries"] = time.monotonic() - start
    finally:
        await db.aclose()
    return Seeded(clients, jobs, hooks, live, attempts, seconds)


async def seed_endpoints(
    store: EndpointStore, clients: list[NewClient], rng: random.Random
) -> dict[str, tuple[Endpoint, str]]:
    """Two endpoints per client (one disabled), each with a full health window; the client's
    CMS endpoint (owner -> (endpoint, its secret)), which the endpoint deliveries go to."""
    cms: dict[str, tuple[Endpoint, str]] = {}
    since = time.time() - SPREAD_S
    for number, new in enumerate(clients):
        owner, name = new.client.id, new.client.name
        for role, events in ENDPOINTS.items():
            secret, sealed = store.first_secret()
            endpoint = Endpoint(
                new_endpoint_id(), owner, f"https://{role}.{name}.example/pixhook", "webhook",
                description=f"{name} {role}", event_types=events, created_at=since,
                updated_at=since, secrets=sealed,
            )  # fmt: skip
            if role == "alerts" and number == 0:
                endpoint = replace(endpoint, enabled=False, disabled_reason="failing for 5 days")
            await store.save(endpoint)
            ok_share = 0.0 if not endpoint.enabled else 0.98
            await in_chunks(
                store.observe(endpoint.id, rng.random() < ok_share, rng.uniform(20, 400), None)
                for _ in range(HEALTH_SAMPLES)
            )
            if role == "cms":
                cms[owner] = (endpoint, secret)
    return cms


async def seed_jobs(db: Redis, store: JobStore, jobs: list[Job], retention_s: float) -> int:
    """Jobs that ended over an hour ago are written as JobStore.create and the ending transition
    leave them, a pipeline per PIPELINED jobs: the record, and JobIndex.add's entries under the
    final status. The last hour's jobs and the backlog go through the stores one by one: how
    many did."""
    live_since = time.time() - LIVE_S
    ended = [j for j in jobs if j.status in TERMINAL and j.created_at < live_since]
    for chunk in chunked(ended, PIPELINED):
        if record_json(chunk[0]) != chunk[0].to_json():
            raise BenchError("record_json no longer writes what Job.to_json does")
        async with db.pipeline(transaction=False) as pipe:
            for job in chunk:
                # JobStore's record key; check_seeded reads records back through JobStore.
                pipe.set(f"pixhook:job:{job.id}", record_json(job), px=int(retention_s * 1000))
                store.index.add(pipe, job)
            await pipe.execute()
    live = [j for j in jobs if j.status not in TERMINAL or j.created_at >= live_since]
    await in_chunks(live_job(store, job) for job in live)
    return len(live)


def record_json(job: Job) -> str:
    """Job.to_json's bytes, 7x faster: its dataclasses.asdict deep-copies input and output
    (~0.1 ms a job), which would be half of the seeding time."""
    return json.dumps({name: getattr(job, name) for name in JOB_FIELDS}, separators=(",", ":"))


async def live_job(store: JobStore, job: Job) -> None:
    """create -> running -> end, as the API and the jobs worker move a job."""
    queued = replace(job, status="queued", started_at=None, finished_at=None, sequence=0)
    if not await store.create(replace(queued, output=None, error=None)):
        raise BenchError(f"job id {job.id} taken")
    steps: list[tuple[JobStatus, dict[str, Any]]] = []
    if job.status in ("running", "succeeded", "failed"):
        steps.append(("running", {"started_at": job.started_at}))
    if job.status in TERMINAL:
        steps.append((job.status, {"finished_at": job.finished_at}))
    for status, times in steps:
        ended = {"output": job.output, "error": job.error} if status in TERMINAL else {}
        if await store.transition(job.id, status, **times, **ended) is None:
            raise BenchError(f"job {job.id} refused to move to {status}")


def plan_hooks(
    jobs: list[Job],
    clients: list[NewClient],
    cms: dict[str, tuple[Endpoint, str]],
    rng: random.Random,
) -> tuple[list[Job], dict[str, Hook]]:
    """Webhooks for a random HOOKED share of the succeeded and failed jobs: a quarter to a gone
    host (dead after every attempt), a twentieth retrying, a fifth to the client's CMS endpoint,
    the rest to the job's own `webhook_url`, which the job then has."""
    ended = [job for job in jobs if job.status in ("succeeded", "failed")]
    chosen = rng.sample(ended, min(len(ended), int(len(jobs) * HOOKED)))
    dead, retrying, endpoint = len(chosen) // 4, len(chosen) // 20, len(chosen) // 5
    names = {c.client.id: (c.client.name, c.webhook_secret) for c in clients}
    hooks: dict[str, Hook] = {}
    for n, job in enumerate(chosen):
        name, secret = names[job.client_id]
        url = f"https://cms.{name}.example/hooks/pixhook"
        if n < dead:
            hook = Hook(url.replace("cms.", "old-cms."), None, secret, DEAD_AFTER, "dead")
        elif n < dead + retrying:
            hook = Hook(url, None, secret, rng.randint(1, 3), "retry")
        elif n < dead + retrying + endpoint:
            found, endpoint_secret = cms[job.client_id]
            hook = Hook(
                found.url, found.id, endpoint_secret, rng.choice([1] * 9 + [2]), "succeeded"
            )
        else:
            hook = Hook(url, None, secret, rng.choice([1] * 9 + [2]), "succeeded")
        hooks[job.id] = hook
    direct = {job_id for job_id, hook in hooks.items() if hook.endpoint_id is None}
    return [replace(j, webhook_url=hooks[j.id].url) if j.id in direct else j for j in jobs], hooks


async def seed_delivery(
    store: DeliveryStore,
    jobs: JobStore,
    job: Job,
    hook: Hook,
    storage: Storage,
    settings: Settings,
) -> str:
    """What `publish_status` queues when a job ends, dated when it ended; the delivery's id."""
    event_type = "job.completed" if job.status == "succeeded" else "job.failed"
    event_id = event_id_for(job)
    assert job.finished_at is not None
    sent = utc_timestamp(datetime.fromtimestamp(job.finished_at, UTC))
    data = job_view(job, storage, settings.api.public_url)
    delivery = Delivery(
        id=new_id("dlv"),
        event_id=event_id,
        event_type=event_type,
        owner=job.client_id,
        url=hook.url,
        payload=Event(event_type, event_id, data, sent).body(),
        created_at=job.finished_at,
        endpoint_id=hook.endpoint_id,
    )
    if not await store.create(delivery):
        raise BenchError(f"delivery {delivery.id} exists")
    await jobs.add_delivery(job.id, delivery.id)
    return delivery.id


async def attempt_all(
    store: DeliveryStore,
    metrics: DeliveryMetrics,
    endpoints: EndpointStore,
    planned: dict[str, Hook],
    rng: random.Random,
) -> int:
    """Claim every due delivery and record its next planned attempt, as the deliveries worker
    does, until none is due: each ends succeeded, dead, or retrying an hour from now."""
    made = 0
    while claimed := (await store.claim("bench", 300, len(planned))).deliveries:
        await in_chunks(
            attempt_one(store, metrics, endpoints, d, planned[d.id], rng.uniform(20, 400))
            for d in claimed
        )
        made += len(claimed)
    return made


async def attempt_one(
    store: DeliveryStore,
    metrics: DeliveryMetrics,
    endpoints: EndpointStore,
    delivery: Delivery,
    hook: Hook,
    duration_ms: float,
) -> None:
    number = delivery.attempts + 1
    last = number >= hook.attempts
    outcome: Outcome = hook.outcome if last else "retry"
    ok = last and outcome == "succeeded"
    delays = (0.0, *SCHEDULE.delays_s)
    started_at = min(delivery.created_at + 0.05 + sum(delays[:number]), time.time())
    headers = webhook_headers([hook.secret], delivery.event_id, int(started_at), delivery.payload)
    if ok:
        failure: tuple[int | None, str | None, str | None, str] = (200, None, None, '{"ok":true}')
    elif hook.outcome == "dead":
        failure = (None, "CONNECT_ERROR", "connection refused", "")
    elif hook.outcome == "retry":
        failure = (None, "TIMEOUT", "no answer within 15 s", "")
    else:
        failure = (503, "HTTP_STATUS", "503 Service Unavailable", "<h1>503</h1> upstream busy")
    status_code, error_code, message, excerpt = failure
    attempt = Attempt(
        number, started_at, ok, round(duration_ms, 2), status_code, error_code,
        message, excerpt, {**SENT_WITH, **headers},
    )  # fmt: skip
    next_at = time.time() + (3600 if last else -1)
    if await store.record(delivery, "bench", attempt, outcome, next_at) is None:
        raise BenchError(f"lost the lease on {delivery.id}")
    await metrics.observe(attempt, outcome, delivery.owner)
    if hook.endpoint_id is not None:
        failure_info = None if ok else {"error_code": error_code, "status_code": status_code}
        await endpoints.observe(hook.endpoint_id, ok, attempt.duration_ms, failure_info)


async def check_seeded(db: Redis, seeded: Seeded) -> str:
    """Every index the pages read holds what was planned and records read back as planned (else
    BenchError); then what Redis holds."""
    index, keys, store = JobIndex(db), DeliveryStore(db).keys, JobStore(db, retention_s=1)
    planned: Counter[str] = Counter()
    for job in seeded.jobs:
        planned[index.all_key()] += 1
        if job.status in INDEXED_STATUSES:
            planned[index.key("status", job.status)] += 1
        planned[index.key("client", job.client_id)] += 1
        planned[store.unfinished_key(job.client_id)] += job.status not in TERMINAL
        if job.id in seeded.hooks:
            outcome = seeded.hooks[job.id].outcome
            planned[
                keys.by_status(job.client_id, "pending" if outcome == "retry" else outcome)
            ] += 1
            planned[keys.dlq] += outcome == "dead"
    async with db.pipeline(transaction=False) as pipe:
        for key in planned:
            pipe.zcard(key)
        found = dict(zip(planned, await pipe.execute(), strict=True))
    wrong = [f"{k}: {found[k]} (planned {n})" for k, n in planned.items() if found[k] != n]
    sample = random.Random(0).sample(seeded.jobs, min(len(seeded.jobs), 2000))
    read = await store.get_many([job.id for job in sample])
    wrong += [f"{p.id} reads back as {r}" for p, r in zip(sample, read, strict=True) if p != r]
    if wrong:
        raise BenchError("seeded data differs from the plan: " + "; ".join(wrong)[:2000])
    memory = await db.info("memory")
    return (
        f"Redis used_memory {memory['used_memory'] / MiB:.1f} MiB, {await db.dbsize():,} keys; "
        f"{len(planned)} index sizes and {len(sample):,} records read back match the plan"
    )


# Timing the pages over HTTP.


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    note: str


@dataclass
class Timing:
    page: Page
    first_ms: float  # the untimed warm-up request
    commands: int  # Redis commands processed during the warm-up request
    samples_ms: list[float]
    size: int
    rows: int
    older: bool


ROW = re.compile(r"<tr>\s*<td(?! colspan)")
OLDER = re.compile(r'<a rel="next" href="([^"]+)"')


def sign_in(http: httpx.Client) -> None:
    form = http.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    if form.status_code != 200 or token is None:
        raise BenchError(f"GET /console/login: {form.status_code}, login_token found: {token}")
    answer = http.post("/console/login", data={"login_token": token[1], "secret": PASSWORD})
    if answer.status_code != 303 or answer.headers.get("location") != "/console/overview":
        raise BenchError(f"sign-in: {answer.status_code} {answer.text[:300]}")


def fetch(http: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = http.get(path)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise BenchError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed_ms, response


def older_than(http: httpx.Client, path: str, pages: int) -> str:
    """The path `pages` clicks on `Older →` away from `path`."""
    for _ in range(pages):
        link = OLDER.search(fetch(http, path)[1].text)
        if link is None:
            raise BenchError(f"{path} has no `Older →` link")
        path = html.unescape(link[1])
    return path


def pages_to_time(http: httpx.Client, seeded: Seeded) -> list[Page]:
    jobs, hooks = seeded.jobs, seeded.hooks
    mid, rare = seeded.clients[1].client, seeded.clients[-1].client

    def matching(**wanted: str) -> str:
        count = sum(all(getattr(j, k) == v for k, v in wanted.items()) for j in jobs)
        return f"{count:,} of {len(jobs):,} jobs match"

    host = f"cms.{rare.name}.example"
    dead_job = next(job_id for job_id, hook in hooks.items() if hook.outcome == "dead")
    outcomes = Counter(h.outcome for h in hooks.values())
    on_host = sum(h.outcome == "succeeded" and f"//{host}/" in h.url for h in hooks.values())
    dead = outcomes["dead"]
    filtered = f"type=image.analyze&status=succeeded&client={mid.id}"
    scarce = f"type=image.generate&status=failed&client={rare.id}"
    return [
        Page("overview", "/console/overview", "figures and the last hour's chart"),
        Page("jobs", "/console/jobs", f"all {len(jobs):,} jobs"),
        Page("jobs failed", "/console/jobs?status=failed", matching(status="failed")),
        Page(
            "jobs 3 filters",
            f"/console/jobs?{filtered}",
            f"{mid.name}: " + matching(type="image.analyze", status="succeeded", client_id=mid.id),
        ),
        Page(
            "jobs rare filter",
            f"/console/jobs?{scarce}",
            f"{rare.name}: " + matching(type="image.generate", status="failed", client_id=rare.id),
        ),
        Page(
            f"jobs {DEEP_PAGES} pages deep",
            older_than(http, "/console/jobs", DEEP_PAGES),
            f"after {DEEP_PAGES} clicks on Older →",
        ),
        Page(
            "job",
            f"/console/jobs/{dead_job}",
            f"a job whose webhook is dead after {DEAD_AFTER} attempts",
        ),
        Page("deliveries dead", "/console/deliveries?status=dead", f"{dead:,} dead"),
        Page(
            "deliveries ok+host",
            f"/console/deliveries?status=succeeded&host={host}",
            f"{on_host:,} of {outcomes['succeeded']:,} succeeded match",
        ),
        Page("dlq", "/console/dlq", f"{dead:,} dead"),
        Page("endpoints", "/console/endpoints", f"{len(ENDPOINTS) * len(CLIENTS)} endpoints"),
    ]


def time_pages(http: httpx.Client, db: redis.Redis, pages: list[Page], rounds: int) -> list[Timing]:
    """One untimed request per page (its Redis command count read around it), then `rounds`
    rounds over every page in turn, so drift on the machine hits each page alike."""
    timings = []
    for page in pages:
        before = commands_processed(db)
        first_ms, response = fetch(http, page.path)
        # The INFO that read `before` is counted in the second reading.
        commands = commands_processed(db) - before - 1
        rows, older = len(ROW.findall(response.text)), OLDER.search(response.text) is not None
        timings.append(Timing(page, first_ms, commands, [], len(response.content), rows, older))
    for _ in range(rounds):
        for timing in timings:
            elapsed_ms, response = fetch(http, timing.page.path)
            timing.samples_ms.append(elapsed_ms)
            timing.size = len(response.content)
    return timings


def commands_processed(db: redis.Redis) -> int:
    stats: dict[str, Any] = db.info("stats")  # type: ignore[assignment]
    return int(stats["total_commands_processed"])


# The report.


def seeding_report(seeded: Seeded, memory: str) -> str:
    jobs = seeded.jobs
    by_status = Counter(j.status for j in jobs)
    by_type = Counter(j.type for j in jobs)
    outcomes = Counter(h.outcome for h in seeded.hooks.values())
    endpoints = len(ENDPOINTS) * len(CLIENTS)
    phases = ", ".join(f"{name} {s:.1f} s" for name, s in seeded.seconds.items())
    return "\n".join(
        [
            f"seeded in {sum(seeded.seconds.values()):.1f} s ({phases})",
            f"  {len(jobs):,} jobs over the last {SPREAD_S // 86400} days, "
            f"{len(seeded.clients)} clients ({', '.join(CLIENTS)}); {seeded.live:,} (the last "
            "hour's, and the backlog) went through create -> running -> end",
            "  status: " + ", ".join(f"{s} {by_status[s]:,}" for s in get_args(JobStatus)),
            "  type: " + ", ".join(f"{t} {n:,}" for t, n in sorted(by_type.items())),
            f"  {len(seeded.hooks):,} deliveries: {outcomes['succeeded']:,} succeeded, "
            f"{outcomes['dead']:,} dead, {outcomes['retry']:,} pending; "
            f"{seeded.attempts:,} attempts; {endpoints} endpoints with "
            f"{HEALTH_SAMPLES:,} health samples each",
            f"  {memory}",
        ]
    )


def timing_report(timings: list[Timing], rounds: int) -> str:
    head = (
        f"{'page':<22}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'bytes':>9}"
        f"{'rows':>6}{'older':>7}{'1st ms':>8}{'redis cmds':>12}"
    )
    lines = [
        f"{rounds} rounds over the pages, after one untimed request each; wall clock per GET "
        "from one httpx.Client (keep-alive) on loopback, signed in as the operator",
        "",
        head,
    ]
    for t in timings:
        lines.append(
            f"{t.page.label:<22}{percentile(t.samples_ms, 50):>8.1f}"
            f"{percentile(t.samples_ms, 95):>8.1f}{max(t.samples_ms):>8.1f}{t.size:>9,}"
            f"{t.rows:>6}{'yes' if t.older else '-':>7}{t.first_ms:>8.1f}{t.commands:>12,}"
        )
    worst = max(timings, key=lambda t: percentile(t.samples_ms, 95))
    worst_ms = percentile(worst.samples_ms, 95)
    over = [t.page.label for t in timings if percentile(t.samples_ms, 95) >= GOAL_MS]
    verdict = (
        f"every page under the {GOAL_MS:.0f} ms goal"
        if not over
        else f"over the {GOAL_MS:.0f} ms goal: {', '.join(over)}"
    )
    lines += ["", f"verdict: worst p95 {worst_ms:.1f} ms ({worst.page.label}): {verdict}", ""]
    lines += [f"{t.page.label:<22}{t.page.path}  ({t.page.note})" for t in timings]
    return "\n".join(lines)


# Running it.


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to seed (default 100000)")
    parser.add_argument("--rounds", type=int, default=20, help="timed requests per page")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the seeded data")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the logs and Redis dir")
    args = parser.parse_args()
    if args.jobs < 2000 or args.rounds < 2:
        parser.error("--jobs must be at least 2000 (the deep pages need them), --rounds 2")
    return args


def main() -> int:
    args = parse_args()
    with workdir("pixhook-bench-console-", args.keep_workdir) as path:
        try:
            timings = run(path, args)
        except (BenchError, StackError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            print_log_tails(path / "logs")
            return 1
    print()
    print(timing_report(timings, args.rounds))
    return 0


def run(path: Path, args: argparse.Namespace) -> list[Timing]:
    """Redis, seeded; the API alone in front of it; every page timed."""
    redis_server = EmbeddedRedis(path / "redis")
    processes = ServiceProcesses({}, path / "logs")
    try:
        redis_server.start()
        port = free_port()
        env = {
            "PIXHOOK_REDIS_URL": redis_server.url,
            "PIXHOOK_STORAGE": f"local:{path / 'files'}",
            "PIXHOOK_SECRET_KEY": secrets.token_urlsafe(32),
            "PIXHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PIXHOOK_CONSOLE_PASSWORD": PASSWORD,
        }
        settings = Settings.from_env({**os.environ, **env})
        print(f"seeding {args.jobs:,} jobs into {redis_server.url} ...", file=sys.stderr)
        seeded, memory = asyncio.run(seed_and_check(settings, args.jobs, random.Random(args.seed)))
        print(seeding_report(seeded, memory), flush=True)
        processes = ServiceProcesses(env, path / "logs")
        processes.start_api(port)
        return measure(f"http://127.0.0.1:{port}", redis_server.url, seeded, args.rounds)
    finally:
        processes.stop()
        redis_server.stop()


async def seed_and_check(settings: Settings, count: int, rng: random.Random) -> tuple[Seeded, str]:
    seeded = await seed(settings, count, rng)
    db = Redis.from_url(settings.redis.url)
    try:
        return seeded, await check_seeded(db, seeded)
    finally:
        await db.aclose()


def measure(api_url: str, redis_url: str, seeded: Seeded, rounds: int) -> list[Timing]:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nmachine: {os.cpu_count()} CPUs (os.cpu_count), load average {load} before timing")
    db = redis.Redis.from_url(redis_url)
    try:
        with httpx.Client(base_url=api_url, timeout=30) as http:
            sign_in(http)
            return time_pages(http, db, pages_to_time(http, seeded), rounds)
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
