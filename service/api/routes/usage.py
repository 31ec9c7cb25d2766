"""`GET /v1/usage`: the caller's provider spending by UTC day."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.api.authentication import client_of
from service.api.client_routes import ClientRoute
from service.api.operations import JSON, Operation, Param, Reply, documented
from service.errors import InvalidInput
from service.jobs.usage_totals import MAX_DAYS, DayUsage
from service.jobs.view_models import Count, TokenCounts, View
from service.runtime import runtime

DEFAULT_DAYS = 30
_DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class DaySpending(View):
    """One UTC day: tokens by kind and cost of the jobs that ended on it; `jobs` counts those
    that used a provider (answers from pixhook's cache included, at no cost), `unpriced_jobs`
    those of a model without a price, whose cost is not in `cost_usd`."""

    day: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    usage: TokenCounts
    cost_usd: Annotated[float, Field(ge=0)]
    jobs: Count
    unpriced_jobs: Count


class UsageReport(View):
    """Every day of the range, oldest first, days without spending included, and their total
    (its `day` is the range's last)."""

    client_id: str
    days: list[DaySpending]
    total: DaySpending


def usage_report(client_id: str, days: list[DayUsage]) -> dict[str, Any]:
    """The report of these days; the console shows the same."""
    total = DayUsage(
        days[-1].day,
        {kind: sum(d.tokens[kind] for d in days) for kind in days[0].tokens},
        round(sum(d.cost_usd for d in days), 8),
        sum(d.jobs for d in days),
        sum(d.unpriced_jobs for d in days),
    )
    return UsageReport.render(
        {"client_id": client_id, "days": [_day(d) for d in days], "total": _day(total)}
    )


def _day(day: DayUsage) -> dict[str, Any]:
    return {
        "day": day.day.isoformat(),
        "usage": day.tokens,
        "cost_usd": day.cost_usd,
        "jobs": day.jobs,
        "unpriced_jobs": day.unpriced_jobs,
    }


def day_range(query: dict[str, str]) -> tuple[date, date]:
    """`from` and `to` (UTC days, both included): by default the last 30 days to today."""
    today = datetime.now(UTC).date()
    last = _day_param(query, "to") or today
    first = _day_param(query, "from") or last - timedelta(DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput("from must not be after to", field="from")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(f"ask for at most {MAX_DAYS} days at once", field="from")
    return first, last


def _day_param(query: dict[str, str], name: str) -> date | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        if _DAY_TEXT.fullmatch(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass  # a day that does not exist, 2026-02-30
    raise InvalidInput(f"{name} must be a day, YYYY-MM-DD", field=name)


_DAY = {"type": "string", "format": "date"}


@documented(
    Operation(
        "The client's provider tokens and cost by UTC day",
        (Reply(200, "the days asked for", {JSON: UsageReport}),),
        params=(
            Param("from", "query", _DAY, "the first day (default: 29 days before `to`)"),
            Param("to", "query", _DAY, "the last day, included (default: today, UTC)"),
        ),
        errors={422: ("INVALID_INPUT",)},
    )
)
async def get_usage(request: Request) -> JSONResponse:
    rt = runtime(request)
    client = client_of(request)
    first, last = day_range(dict(request.query_params))
    days = await rt.jobs.usage.days(client.id, first, last)
    return JSONResponse(usage_report(client.id, days))


routes = [ClientRoute("/v1/usage", get_usage, methods=["GET"])]
