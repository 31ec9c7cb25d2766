"""What callers see of a batch, in `GET /v1/batches/{id}` and in batch events: `BatchView`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from service.jobs.batch_store import Batch, BatchStatus
from service.jobs.index import CURSOR_PATTERN
from service.jobs.view_models import Count, Subscription, Timestamp, Url, View
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
    item_webhooks: bool
    webhook_url: str | None
    webhook_events: list[Subscription]
    metadata: dict[str, Any]
    failures: list[BatchFailure]
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
BatchSummary: Any = create_model(
    "BatchSummary",
    __base__=View,
    __doc__="A batch as `GET /v1/batches` lists it: all of `BatchView` but its failures.",
    **_SUMMARY_FIELDS,
)


class BatchPage(View):
    """A page of batches, newest first; `next_cursor` asks for the next one (null: no more)."""

    data: list[BatchSummary]
    next_cursor: Annotated[str, Field(pattern=f"^{CURSOR_PATTERN.pattern}$")] | None


def batch_summary(batch: Batch, runtime: Runtime) -> dict[str, Any]:
    """A batch as `GET /v1/batches` lists it: its view without the failures, which the batch's
    own route shows."""
    view = batch_view(batch, [], runtime)
    summary: dict[str, Any] = BatchSummary.render(
        {k: v for k, v in view.items() if k != "failures"}
    )
    return summary


def batch_view(batch: Batch, failures: list[dict[str, Any]], runtime: Runtime) -> dict[str, Any]:
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
            "item_webhooks": batch.item_webhooks,
            "webhook_url": batch.webhook_url,
            "webhook_events": list(batch.webhook_events),
            "metadata": batch.metadata,
            "failures": failures,
            "results": results,
            "items_url": batch.items_url,
            "error": batch.error,
            "urls": {
                "self": f"{public_url}/v1/batches/{batch.id}",
                "events": f"{public_url}/v1/batches/{batch.id}/events",
                "cancel": f"{public_url}/v1/batches/{batch.id}/cancel",
            },
        }
    )
