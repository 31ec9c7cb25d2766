"""Delivery counters and the attempt-latency histogram, kept in Redis so that every API replica
reports the same figures for all workers."""

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

from webhooks.keys import DEFAULT_PREFIX, Keys
from webhooks.store import Attempt, Outcome

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


# Per-minute counts for the console's chart of the last hour, kept a little longer than that.
HISTORY_TTL_S = 2 * 3600

# One script call instead of a dozen HINCRBYs: building commands is most of a client's cost.
# KEYS: totals, this minute's history. ARGV: latency, ttl, the two history fields, fields...
_OBSERVE = """
redis.call('HINCRBYFLOAT', KEYS[1], 'latency_sum', ARGV[1])
for i = 5, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""


async def recent_history(redis: Redis, prefix: str, minutes: int) -> list[dict[str, int]]:
    """The counts of each of the last `minutes` minutes, oldest first, the current one last."""
    now, keys = time.time(), Keys(prefix)
    async with redis.pipeline(transaction=False) as pipe:
        for back in range(minutes - 1, -1, -1):
            pipe.hgetall(keys.history(now - back * 60))
        rows = await pipe.execute()
    return [{k.decode(): int(v) for k, v in row.items()} for row in rows]


class DeliveryMetrics:
    def __init__(self, redis: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        self.key = self._keys.delivery_metrics
        self._observe = redis.register_script(_OBSERVE)

    async def observe(
        self, attempt: Attempt, outcome: Outcome | None, owner: str, client: Redis | None = None
    ) -> None:
        """Count one attempt and, when it settled the delivery, the delivery's outcome
        (queued on `client` when it is a pipeline); and in this minute's history, in all and
        for the delivery's owner."""
        seconds = attempt.duration_ms / 1000
        fields = [f"attempts|{'ok' if attempt.ok else attempt.error_code}", "latency_count"]
        if outcome in ("succeeded", "dead"):
            fields.append(f"deliveries|{outcome}")
        fields += [f"latency_le|{bound}" for bound in LATENCY_BUCKETS_S if seconds <= bound]
        minute = self._keys.history(attempt.started_at)
        history_field = "attempts|ok" if attempt.ok else "attempts|failed"
        args: list[str | float] = [seconds, HISTORY_TTL_S, history_field]
        args += [f"{history_field}|{owner}", *fields]
        await self._observe(keys=[self.key, minute], args=args, client=client)

    async def count_expired(self, number: int) -> None:
        if number:
            await self._redis.hincrby(self.key, "dlq_expired", number)  # type: ignore[misc]

    async def snapshot(self) -> dict[str, float]:
        raw = await self._redis.hgetall(self.key)  # type: ignore[misc]
        return {k.decode(): float(v) for k, v in raw.items()}


@dataclass(frozen=True)
class DeliveryGauges:
    due: int
    pending: int
    dead: int
    open_circuits: int


def delivery_metric_families(
    counters: dict[str, float], gauges: DeliveryGauges
) -> Iterator[Metric]:
    """Prometheus metric families from a counter snapshot and the current gauges."""
    attempts = CounterMetricFamily(
        "pixhook_delivery_attempts",
        "Delivery attempts by result (ok or error code)",
        labels=["result"],
    )
    outcomes = CounterMetricFamily(
        "pixhook_deliveries", "Deliveries settled, by outcome", labels=["outcome"]
    )
    for field, value in sorted(counters.items()):
        kind, _, label = field.partition("|")
        if kind == "attempts":
            attempts.add_metric([label], value)
        elif kind == "deliveries":
            outcomes.add_metric([label], value)
    yield attempts
    yield outcomes
    yield CounterMetricFamily(
        "pixhook_dlq_expired",
        "Dead deliveries purged after the DLQ retention",
        value=counters.get("dlq_expired", 0.0),
    )
    count = counters.get("latency_count", 0.0)
    buckets = [(str(b), counters.get(f"latency_le|{b}", 0.0)) for b in LATENCY_BUCKETS_S]
    latency = HistogramMetricFamily(
        "pixhook_delivery_attempt_duration_seconds", "Duration of delivery attempts"
    )
    latency.add_metric([], [*buckets, ("+Inf", count)], counters.get("latency_sum", 0.0))
    yield latency
    for name, help_text, value in (
        ("pixhook_deliveries_due", "Deliveries due now (the backlog to scale on)", gauges.due),
        ("pixhook_deliveries_pending", "Deliveries not yet settled", gauges.pending),
        ("pixhook_dlq_size", "Dead deliveries in the dead-letter queue", gauges.dead),
        ("pixhook_circuits_open", "Hosts whose circuit breaker is open", gauges.open_circuits),
    ):
        yield GaugeMetricFamily(name, help_text, value=value)
