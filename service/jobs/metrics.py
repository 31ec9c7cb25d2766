"""Job, provider and storage figures, kept in Redis like the delivery metrics
(webhooks/metrics.py), so that every API replica's `/metrics` reports all workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from service.jobs.model import Job
from service.keys import PREFIX, Keys
from webhooks import HISTORY_TTL_S
from webhooks import Keys as DeliveryKeys

# Image jobs take from tens of milliseconds (a thumbnail) to minutes (a slow provider, the timeout).
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Only models the provider answered for become labels; a name is cut so none can grow the hash.
_MAX_LABEL_CHARS = 64

# arq queues a worker's cron jobs in the queue the worker serves, under ids of this prefix.
_CRON_PREFIX = b"cron:"

# ARGV holds (field, amount) pairs: one script call per observation, as in webhooks/metrics.py.
_ADD = """
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
"""


class JobMetrics:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._shared_keys = DeliveryKeys(prefix)  # the per-minute history both write
        self.key = Keys(prefix).job_metrics
        self._add = redis.register_script(_ADD)

    async def transitioned(self, before: Job, after: Job, client: Pipeline | None = None) -> None:
        """Count a status change: the wait when a job starts; outcome and run time when it ends
        (queued on `client` when it is a pipeline, so it counts exactly when the change does)."""
        fields: dict[str, float] = {}
        if after.status == "running" and after.started_at is not None:
            fields |= _observation(f"wait|{after.type}", after.started_at - after.created_at)
        elif after.status in ("succeeded", "failed", "canceled"):
            fields[f"finished|{after.type}|{after.status}"] = 1
            if after.status == "failed":
                code = (after.error or {}).get("code", "INTERNAL_ERROR")
                fields[f"failures|{after.type}|{code}"] = 1
            if before.started_at is not None and after.finished_at is not None:
                seconds = after.finished_at - before.started_at
                fields |= _observation(f"run|{after.type}", seconds)
            if client is not None:
                minute = self._shared_keys.history(after.finished_at or time.time())
                client.hincrby(minute, f"jobs|{after.status}", 1)
                client.hincrby(minute, f"jobs|{after.status}|{after.client_id}", 1)
                client.expire(minute, HISTORY_TTL_S)
        await self._send(fields, client)

    async def provider_replied(self, provider: str, model: str, seconds: float) -> None:
        await self._send(_observation(f"provider|{provider}|{_label(model)}", seconds))

    async def provider_throttled(self, provider: str, model: str) -> None:
        await self._send({f"throttled|{provider}|{_label(model)}": 1})

    async def provider_used(
        self, provider: str, model: str, tokens: dict[str, int], cost_usd: float | None
    ) -> None:
        """A call's tokens by kind (input, output, cached_input) and its cost, when priced."""
        labels = f"{provider}|{_label(model)}"
        fields: dict[str, float] = {f"tokens|{labels}|{k}": n for k, n in tokens.items() if n}
        if cost_usd:
            fields[f"cost|{labels}"] = cost_usd
        await self._send(fields)

    async def provider_streamed(
        self, provider: str, model: str, ttft_s: float | None, chunks: int
    ) -> None:
        """A streamed call: its time to first token, and the pieces of text it came in."""
        labels = f"{provider}|{_label(model)}"
        fields = {f"chunks|{labels}": float(chunks)}
        if ttft_s is not None:
            fields |= _observation(f"ttft|{labels}", ttft_s)
        await self._send(fields)

    async def storage_failed(self, operation: str) -> None:
        await self._send({f"storage_errors|{operation}": 1})

    async def snapshot(self) -> dict[str, float]:
        raw = await self._redis.hgetall(self.key)  # type: ignore[misc]
        return {k.decode(): float(v) for k, v in raw.items()}

    async def _send(self, fields: dict[str, float], client: Pipeline | None = None) -> None:
        if fields:
            args = [item for pair in fields.items() for item in pair]
            await self._add(keys=[self.key], args=args, client=client)


def _observation(series: str, seconds: float) -> dict[str, float]:
    seconds = max(0.0, seconds)
    fields = {f"{series}|sum": seconds, f"{series}|count": 1.0}
    fields |= {f"{series}|le|{b}": 1.0 for b in DURATION_BUCKETS_S if seconds <= b}
    return fields


def _label(value: str) -> str:
    # "|" separates a field's parts; it never appears in a real model name.
    return value.replace("|", "_")[:_MAX_LABEL_CHARS]


async def oldest_queued_age_s(redis: Redis, queue: str, in_progress_prefix: str) -> float:
    """Seconds the oldest job still waiting has waited. arq keeps a job in its queue's sorted set
    (score: enqueue time in ms) while it runs, so jobs with an in-progress claim are skipped, and
    so are the worker's cron entries."""
    now_ms = time.time() * 1000
    start, page = 0, 100
    while entries := await redis.zrange(queue, start, start + page - 1, withscores=True):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in entries:
                pipe.exists(in_progress_prefix + job_id.decode())
            claimed = await pipe.execute()
        for (job_id, score), running in zip(entries, claimed, strict=True):
            if not running and not job_id.startswith(_CRON_PREFIX):
                # A deferred job's score is in the future: it is not late yet.
                return max(0.0, (now_ms - float(score)) / 1000)
        start += page
    return 0.0


@dataclass(frozen=True)
class JobGauges:
    queued: int
    oldest_queued_age_s: float
    batches_running: int


def job_metric_families(counters: dict[str, float], gauges: JobGauges) -> Iterator[Metric]:
    """Prometheus metric families from a `JobMetrics` snapshot and the current gauges."""
    finished = CounterMetricFamily(
        "pixhook_jobs_finished", "Jobs ended, by type and outcome", labels=["type", "outcome"]
    )
    failures = CounterMetricFamily(
        "pixhook_job_failures", "Failed jobs, by type and error code", labels=["type", "code"]
    )
    throttled = CounterMetricFamily(
        "pixhook_provider_throttled",
        "Provider requests answered 429 (rate limited)",
        labels=["provider", "model"],
    )
    storage = CounterMetricFamily(
        "pixhook_storage_errors", "Object storage failures, by operation", labels=["operation"]
    )
    tokens = CounterMetricFamily(
        "pixhook_provider_tokens",
        "Tokens providers billed, by kind (input, output, cached_input)",
        labels=["provider", "model", "kind"],
    )
    cost = CounterMetricFamily(
        "pixhook_provider_cost",
        "What provider calls cost in US dollars, by the price table",
        labels=["provider", "model"],
    )
    chunks = CounterMetricFamily(
        "pixhook_provider_stream_chunks",
        "Pieces of text streamed replies came in",
        labels=["provider", "model"],
    )
    for field, value in sorted(counters.items()):
        kind, *labels = field.split("|")
        family = {
            "finished": finished,
            "failures": failures,
            "throttled": throttled,
            "storage_errors": storage,
            "tokens": tokens,
            "cost": cost,
            "chunks": chunks,
        }.get(kind)
        if family is not None:
            family.add_metric(labels, value)
    yield from (finished, failures, throttled, storage, tokens, cost, chunks)
    yield _histogram(
        counters, "run", "pixhook_job_run_seconds", "Job run time, started to ended", ["type"]
    )
    yield _histogram(
        counters, "wait", "pixhook_job_wait_seconds", "Job queue wait, created to started", ["type"]
    )
    yield _histogram(
        counters,
        "provider",
        "pixhook_provider_request_seconds",
        "Provider requests answered, by latency",
        ["provider", "model"],
    )
    yield _histogram(
        counters,
        "ttft",
        "pixhook_provider_ttft_seconds",
        "Streamed provider replies: from the call's start to the first text",
        ["provider", "model"],
    )
    for name, help_text, value in (
        ("pixhook_jobs_queued", "Image jobs queued or running: work in hand", gauges.queued),
        (
            "pixhook_jobs_oldest_queued_age_seconds",
            "How long the oldest waiting job has waited",
            gauges.oldest_queued_age_s,
        ),
        (
            "pixhook_batches_running",
            "Batches neither completed nor canceled",
            gauges.batches_running,
        ),
    ):
        yield GaugeMetricFamily(name, help_text, value=value)


def _histogram(
    counters: dict[str, float], kind: str, name: str, help_text: str, labels: list[str]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    series = {
        field.removeprefix(f"{kind}|").removesuffix("|count")
        for field in counters
        if field.startswith(f"{kind}|") and field.endswith("|count")
    }
    for labelled in sorted(series):
        prefix = f"{kind}|{labelled}"
        count = counters[f"{prefix}|count"]
        buckets = [(str(b), counters.get(f"{prefix}|le|{b}", 0.0)) for b in DURATION_BUCKETS_S]
        family.add_metric(
            labelled.split("|"), [*buckets, ("+Inf", count)], counters.get(f"{prefix}|sum", 0.0)
        )
    return family
