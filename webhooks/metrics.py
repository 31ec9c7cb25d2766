"""Delivery counters and the attempt-latency histogram, kept in Redis so that every API replica
reports the same figures for all workers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.asyncio import Redis

from webhooks.store import Attempt, Outcome

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


# One script call instead of a dozen HINCRBYs: building commands is most of a client's cost.
_OBSERVE = """
redis.call('HINCRBYFLOAT', KEYS[1], 'latency_sum', ARGV[1])
for i = 2, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
"""


class DeliveryMetrics:
    def __init__(self, redis: Redis, prefix: str = "pixhook") -> None:
        self._redis = redis
        self.key = f"{prefix}:metrics:deliveries"
        self._observe = redis.register_script(_OBSERVE)

    async def observe(
        self, attempt: Attempt, outcome: Outcome | None, client: Redis | None = None
    ) -> None:
        """Count one attempt and, when it settled the delivery, the delivery's outcome
        (queued on `client` when it is a pipeline)."""
        seconds = attempt.duration_ms / 1000
        fields = [f"attempts|{'ok' if attempt.ok else attempt.error_code}", "latency_count"]
        if outcome in ("succeeded", "dead"):
            fields.append(f"deliveries|{outcome}")
        fields += [f"latency_le|{bound}" for bound in LATENCY_BUCKETS_S if seconds <= bound]
        await self._observe(keys=[self.key], args=[seconds, *fields], client=client)

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
