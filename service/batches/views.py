"""What callers see of a batch, in `GET /v1/batches/{id}` and in batch events: `BatchView`."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from service.jobs.batch_outcomes import BatchStats, bucket_ms
from service.jobs.batch_store import Batch, BatchStatus
from service.jobs.index import CURSOR_PATTERN
from service.jobs.outputs import JobOutput
from service.jobs.view_models import (
    Count,
    JobError,
    Subscription,
    Timestamp,
    TokenCounts,
    Url,
    View,
)
from service.jobs.views import iso
from service.runtime import Runtime

RESULTS_MEDIA_TYPE = "application/x-ndjson"


class BatchCounts(View):
    total: Count
    pending: Count
    in_flight: Count
    succeeded: Count
    failed: Count
    canceled: Count


class ItemError(View):
    code: str
    message: str
    # A job's own error has none; an item refused at intake has one.
    field: str | None = None


class BatchFailure(View):
    index: Count
    # The item's own reference, so a failure names the product; none when refused at intake.
    reference: str | None = None
    error: ItemError


class BatchResults(View):
    """The results file: one JSON line per item, written when the batch ends."""

    url: Url
    media_type: Literal["application/x-ndjson"]
    lines: Count


class BatchUrls(View):
    self: Url
    events: Url
    cancel: Url
    items: Url
    retry: Url
    resume: Url
    results_csv: Url


class LatencySummary(View):
    """Item latency, from the start of an item's job (its last attempt) to its end: read from
    buckets 10% wide, so within 5% of the exact figure."""

    p50_ms: Annotated[float, Field(ge=0)] | None
    p95_ms: Annotated[float, Field(ge=0)] | None


class BatchSummary(View):
    """How it went: outcomes by status and by error code, how fast, and what it spent."""

    by_status: dict[str, Count]
    by_error_code: dict[str, Count]
    # Of the items that ended, the share that succeeded; null before any ended.
    success_rate: Annotated[float, Field(ge=0, le=1)] | None
    latency: LatencySummary
    # Items ended per second of the batch's running time (to its end, or to now).
    throughput_per_s: Annotated[float, Field(ge=0)] | None


class BatchItem(View):
    """One item: a line of the results file, and an entry of `GET /v1/batches/{id}/items`."""

    index: Count
    reference: str | None
    metadata: dict[str, Any] | None
    job_id: str | None
    status: Literal["succeeded", "failed", "canceled", "running"]
    # Runs of its job so far (0: it never had one).
    attempts: Count
    output: JobOutput | None
    error: JobError | ItemError | None


class BatchItemPage(View):
    """A page of items in index order; `next_cursor` asks for the next one."""

    data: list[BatchItem]
    next_cursor: Annotated[str, Field(pattern="^[0-9]+$")] | None


class BatchView(View):
    """A batch, in `GET /v1/batches/{id}` and in the `data` of its webhook events."""

    id: str
    object: Literal["batch"]
    type: str
    status: BatchStatus
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    counts: BatchCounts
    progress: Annotated[float, Field(ge=0, le=1)]
    concurrency: Annotated[int, Field(ge=1)]
    # Runs of an item whose failures may pass, before it fails for good.
    item_attempts: Annotated[int, Field(ge=1)]
    # Times its failed items were asked to run again.
    retries: Count
    item_webhooks: bool
    webhook_url: str | None
    webhook_events: list[Subscription]
    metadata: dict[str, Any]
    # The first 100 failed items; `GET /v1/batches/{id}/items?status=failed` pages them all.
    failures: list[BatchFailure]
    summary: BatchSummary
    # What its items' provider calls cost so far (answers from pixhook's cache: nothing);
    # `unpriced_items` used a model without a price, whose cost is not in `cost_usd`.
    usage: TokenCounts
    cost_usd: Annotated[float, Field(ge=0)]
    unpriced_items: Count
    max_cost: Annotated[float, Field(gt=0)] | None
    # While `paused`: why (`budget`: cost_usd reached max_cost; `keys`: every API key of
    # `paused_provider` was refused), and since when.
    paused_reason: Literal["budget", "keys"] | None
    paused_at: Timestamp | None
    paused_provider: str | None
    results: BatchResults | None
    items_url: Annotated[
        str | None, Field(description="where its items were read from, if not uploaded")
    ] = None
    error: Annotated[
        ItemError | None, Field(description="why a `failed` batch's items could not be read")
    ] = None
    urls: BatchUrls


# Made from `BatchView`, so that a field added to a batch's view is listed too.
_SUMMARY_FIELDS: dict[str, Any] = {
    name: (field.annotation, field)
    for name, field in BatchView.model_fields.items()
    if name != "failures"
}
BatchListItem: Any = create_model(
    "BatchListItem",
    __base__=View,
    __doc__="A batch as `GET /v1/batches` lists it: all of `BatchView` but its failures.",
    **_SUMMARY_FIELDS,
)


class BatchPage(View):
    """A page of batches, newest first; `next_cursor` asks for the next one (null: no more)."""

    data: list[BatchListItem]
    next_cursor: Annotated[str, Field(pattern=f"^{CURSOR_PATTERN.pattern}$")] | None


def batch_list_item(batch: Batch, runtime: Runtime) -> dict[str, Any]:
    """A batch as `GET /v1/batches` lists it: its view without the failures, which the batch's
    own route shows."""
    view = batch_view(batch, [], runtime)
    summary: dict[str, Any] = BatchListItem.render(
        {k: v for k, v in view.items() if k != "failures"}
    )
    return summary


def batch_view(
    batch: Batch,
    failures: list[dict[str, Any]],
    runtime: Runtime,
    stats: BatchStats | None = None,
) -> dict[str, Any]:
    """A batch as callers see it, in `GET /v1/batches/{id}` and in batch events."""
    public_url = runtime.settings.api.public_url
    # A batch that never ran (`receiving`, or `failed` to read its items) has no results.
    ended = batch.status in ("completed", "canceled") and batch.total > 0
    results = None
    if ended:
        results = {
            "url": runtime.storage.url(batch.results_key, RESULTS_MEDIA_TYPE),
            "media_type": RESULTS_MEDIA_TYPE,
            "lines": batch.result_lines,
        }
    return BatchView.render(
        {
            "id": batch.id,
            "object": "batch",
            "type": batch.type,
            "status": batch.status,
            "created_at": iso(batch.created_at),
            "started_at": iso(batch.started_at),
            "finished_at": iso(batch.finished_at),
            "counts": {
                "total": batch.total,
                "pending": batch.total - batch.done - batch.in_flight,
                "in_flight": batch.in_flight,
                "succeeded": batch.succeeded,
                "failed": batch.failed,
                "canceled": batch.canceled,
            },
            # No items yet (receiving), or never any (failed to read them): nothing done.
            "progress": round(batch.done / batch.total, 4) if batch.total else 0.0,
            "concurrency": batch.concurrency,
            "item_attempts": batch.item_attempts,
            "retries": batch.retries,
            "item_webhooks": batch.item_webhooks,
            "webhook_url": batch.webhook_url,
            "webhook_events": list(batch.webhook_events),
            "metadata": batch.metadata,
            "failures": failures,
            "summary": summary(batch, stats or BatchStats({}, {})),
            "usage": batch.usage,
            "cost_usd": batch.cost_usd,
            "unpriced_items": batch.unpriced_items,
            "max_cost": batch.max_cost,
            "paused_reason": batch.paused_reason,
            "paused_at": iso(batch.paused_at),
            "paused_provider": batch.paused_provider,
            "results": results,
            "items_url": batch.items_url,
            "error": batch.error,
            "urls": {
                "self": f"{public_url}/v1/batches/{batch.id}",
                "events": f"{public_url}/v1/batches/{batch.id}/events",
                "cancel": f"{public_url}/v1/batches/{batch.id}/cancel",
                "items": f"{public_url}/v1/batches/{batch.id}/items",
                "retry": f"{public_url}/v1/batches/{batch.id}/retry",
                "resume": f"{public_url}/v1/batches/{batch.id}/resume",
                "results_csv": f"{public_url}/v1/batches/{batch.id}/results.csv",
            },
        }
    )


def summary(batch: Batch, stats: BatchStats) -> dict[str, Any]:
    """The batch's `summary`, from its counters and stats."""
    ended = batch.done
    running_s = None
    if batch.started_at is not None:
        running_s = (batch.finished_at or time.time()) - batch.started_at
    return {
        "by_status": {
            "succeeded": batch.succeeded,
            "failed": batch.failed,
            "canceled": batch.canceled,
            "running": batch.in_flight,
            "pending": max(0, batch.total - ended - batch.in_flight),
        },
        "by_error_code": dict(sorted(stats.codes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "success_rate": round(batch.succeeded / ended, 4) if ended else None,
        "latency": {
            "p50_ms": _percentile(stats.latency, 0.50),
            "p95_ms": _percentile(stats.latency, 0.95),
        },
        "throughput_per_s": round(ended / running_s, 3) if running_s and ended else None,
    }


def _percentile(buckets: dict[int, int], share: float) -> float | None:
    """The latency (ms) below which `share` of the counted items ended, from their buckets."""
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen = share * total, 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return round(bucket_ms(bucket), 1)
    return round(bucket_ms(max(buckets)), 1)
