"""A batch's items as callers read them: a page of them by status (`GET /v1/batches/{id}/items`),
and every ended one in order, for the results file written anew after a retry and for
`results.csv`.

What an item is comes from two records: the batch's (its outcome bitmaps and the errors of its
failed items, service/jobs/batch_store.py) and its job's (reference, metadata, output, attempts).
An item refused at intake, or canceled before it started, has no job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from service.batches.views import RESULTS_MEDIA_TYPE
from service.jobs.batch_outcomes import ItemStatus
from service.jobs.batch_store import Batch
from service.jobs.model import TERMINAL, Job
from service.jobs.views import job_view
from service.runtime import Runtime

# Items read at a time: one MGET of their jobs, one HMGET of their errors.
CHUNK = 500


def item_job_id(batch_id: str, index: int) -> str:
    return f"job_{batch_id.removeprefix('bat_')}_{index}"


async def item_page(
    runtime: Runtime, batch: Batch, status: ItemStatus | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` items after index `after`, of `status` (None: every ended item)."""
    indexes = await runtime.batches.outcomes.indexes(batch.id, status, after, limit, batch.total)
    return await _items(runtime, batch, indexes)


async def failures(runtime: Runtime, batch: Batch) -> list[dict[str, Any]]:
    """The batch view's first failed items, `{index, reference, error}`: a failure is read by
    the product it is about."""
    failed = await runtime.batches.outcomes.failures(batch.id, batch.total)
    jobs = await runtime.jobs.get_many([item_job_id(batch.id, f["index"]) for f in failed])
    references = {f["index"]: job.reference for f, job in zip(failed, jobs, strict=True) if job}
    # Items refused at intake have no job: their reference was kept with their error.
    refused = [f["index"] for f in failed if f["index"] not in references]
    for index, error in (await runtime.batches.outcomes.errors(batch.id, refused)).items():
        references[index] = error.get("reference")
    return [{"index": f["index"], "reference": references.get(f["index"])} | f for f in failed]


async def ended_items(runtime: Runtime, batch: Batch) -> AsyncIterator[dict[str, Any]]:
    """Every item that has ended, in index order, a chunk at a time."""
    after = -1
    while True:
        indexes = await runtime.batches.outcomes.indexes(batch.id, None, after, CHUNK, batch.total)
        if not indexes:
            return
        for item in await _items(runtime, batch, indexes):
            yield item
        after = indexes[-1]


async def _items(runtime: Runtime, batch: Batch, indexes: list[int]) -> list[dict[str, Any]]:
    jobs = await runtime.jobs.get_many([item_job_id(batch.id, i) for i in indexes])
    errors = await runtime.batches.outcomes.errors(batch.id, indexes)
    return [
        item_fields(runtime, index, job, errors.get(index))
        for index, job in zip(indexes, jobs, strict=True)
    ]


def item_fields(
    runtime: Runtime, index: int, job: Job | None, recorded: dict[str, Any] | None
) -> dict[str, Any]:
    """One item: a results line, and an entry of the items listing."""
    if job is None:
        error = None
        if recorded is not None:
            error = {k: v for k, v in recorded.items() if k in ("code", "message", "field")}
        return {
            "index": index,
            "reference": (recorded or {}).get("reference"),
            "metadata": None,
            "job_id": None,
            "status": "failed" if error else "canceled",
            "attempts": 0,
            "output": None,
            "error": error,
        }
    output = None
    if job.output is not None:
        output = job_view(job, runtime.storage, runtime.settings.api.public_url)["output"]
    status = job.status if job.status in TERMINAL else "running"
    return {
        "index": index,
        "reference": job.reference,
        "metadata": job.metadata,
        "job_id": job.id,
        "status": status,
        "attempts": job.attempt,
        "output": output,
        "error": job.error,
    }


async def rewrite_results(runtime: Runtime, batch: Batch) -> None:
    """After a retry: a new results file, one line per item with its latest outcome, in index
    order, written from the records (the first file's lines are in the order items ended)."""
    key = batch.results_key.rsplit("/", 1)[0] + f"/results-{batch.retries}.jsonl"
    upload_id = await runtime.storage.start_parts(key, media_type=RESULTS_MEDIA_TYPE)
    chunk = bytearray()
    parts = lines = 0

    async def put() -> None:
        nonlocal parts
        parts += 1
        await runtime.storage.put_part(key, upload_id, parts, bytes(chunk))
        chunk.clear()

    async for item in ended_items(runtime, batch):
        chunk += json.dumps(item, separators=(",", ":")).encode() + b"\n"
        lines += 1
        if len(chunk) >= runtime.storage.min_part_bytes:
            await put()
    if chunk or parts == 0:
        await put()
    await runtime.storage.finish_parts(key, upload_id, parts)
    await runtime.batches.results_rewritten(batch.id, key, upload_id, parts, lines)
