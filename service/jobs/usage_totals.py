"""Each client's provider spending by UTC day: tokens by kind, cost and jobs, counted as jobs
end (in the transaction that ends them, so exactly once) and read for a range of days.

Costs are kept in units of 1e-8 USD, the precision prices are rounded to, so sums are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from service.jobs.model import Job
from service.keys import PREFIX, Keys

COST_UNITS_PER_USD = 100_000_000
# A budget is counted in those units: at least one of them, and well within a Redis integer.
MIN_BUDGET_USD = 1 / COST_UNITS_PER_USD
MAX_BUDGET_USD = 1e9
MAX_DAYS = 366  # days one read may span
_KEEP_S = 400 * 86400  # a year and a month, so last year's month can be compared
TOKEN_KINDS = ("input_tokens", "output_tokens", "cached_input_tokens")


def cost_units(cost_usd: float) -> int:
    return round(cost_usd * COST_UNITS_PER_USD)


@dataclass(frozen=True)
class DayUsage:
    day: date
    tokens: dict[str, int]
    cost_usd: float
    jobs: int  # jobs that used a provider (answers from pixhook's cache included)
    unpriced_jobs: int  # of those, jobs of a model without a price: not in cost_usd


class UsageTotals:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._keys = Keys(prefix)

    def count(self, pipe: Pipeline, job: Job) -> None:
        """Queue the ended job's spending on `pipe`, under the UTC day it ended."""
        if job.usage is None:
            return
        day = datetime.fromtimestamp(job.finished_at or 0, UTC).date().isoformat()
        key = self._keys.client_usage(job.client_id, day)
        for kind in TOKEN_KINDS:
            if job.usage.get(kind):
                pipe.hincrby(key, kind, job.usage[kind])
        pipe.hincrby(key, "jobs", 1)
        if job.cost_usd is None:
            pipe.hincrby(key, "unpriced_jobs", 1)
        else:
            pipe.hincrby(key, "cost", cost_units(job.cost_usd))
        pipe.expire(key, _KEEP_S)

    async def days(self, client_id: str, first: date, last: date) -> list[DayUsage]:
        """Every day from `first` to `last`, days without spending included (all zero)."""
        days = [first + timedelta(n) for n in range((last - first).days + 1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self._keys.client_usage(client_id, day.isoformat()))
            found = await pipe.execute()
        return [_day(day, raw) for day, raw in zip(days, found, strict=True)]


def _day(day: date, raw: dict[bytes, bytes]) -> DayUsage:
    counts = {k.decode(): int(v) for k, v in raw.items()}
    return DayUsage(
        day,
        {kind: counts.get(kind, 0) for kind in TOKEN_KINDS},
        counts.get("cost", 0) / COST_UNITS_PER_USD,
        counts.get("jobs", 0),
        counts.get("unpriced_jobs", 0),
    )
