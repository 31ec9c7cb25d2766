"""Running a batch: items become jobs a few at a time, each result is written once, and the
batch ends with its results file and a `batch.completed` event.

Nothing here holds a batch in memory. The API starts the first items; after that, each item's
end starts the next ones (`job_ended`, which `follow_items` registers to hear of every job's
end), and `reconcile`, run every few seconds by the jobs worker, repairs whatever a crash left
half done. Every step is safe to repeat: item job ids are
derived from the batch and the index, and an item's end is recorded once (the `done` bitmap).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import replace
from functools import partial
from typing import Any

from service.batches.items import failures, item_fields, item_job_id, rewrite_results
from service.batches.key_checks import check_keys_before_start
from service.batches.views import batch_view
from service.errors import Conflict, InvalidInput
from service.jobs.batch_store import REFUSED, RETRY, Batch, BatchStatus, Outcome
from service.jobs.model import TERMINAL, Job
from service.jobs.streams import append_event
from service.launch import launch_job
from service.lifecycle import end_job, requeue_job
from service.providers.errors import PROVIDER_KEYS_EXHAUSTED
from service.queue import enqueue_job
from service.runtime import Runtime
from service.submission import read_submission
from webhooks import Event

log = logging.getLogger("pixhook.batches")

PROGRESS_STEP = 0.05  # a progress event at least every 5% of the items...
STALLED_CLOSE_S = 60.0  # ...and a batch whose finisher died is finished by `reconcile` after this
_LOCK_TTL_S = 120.0
# A paused batch is as unended as a running one: its items in flight end, a cancel ends it.
_UNENDED = ("running", "paused")


# Starting items.


async def fill_client(runtime: Runtime, client_id: str) -> None:
    """Start items of the client's running batches while their concurrency allows."""
    client_batches = await runtime.batches.running(client_id)
    for batch_id in client_batches:
        await fill(runtime, batch_id, client_batches)


async def fill(runtime: Runtime, batch_id: str, client_batches: list[str] | None = None) -> None:
    """Start what the batch's concurrency allows; `client_batches` (the client's running batches)
    saves reading them again when the caller has."""
    batch = await runtime.batches.get(batch_id)
    if batch is None or batch.status != "running":
        return
    if client_batches is None:
        client_batches = await runtime.batches.running(batch.client_id)
    cap = runtime.settings.batches.client_concurrency
    started, claimed = await runtime.batches.claim(batch, batch.concurrency, cap, client_batches)
    if started:
        await check_keys_before_start(runtime, [body for _, body in claimed])
        current = await runtime.batches.get(batch.id)
        await _publish(runtime, current or batch, "batch.started")
    for index, body in claimed:
        await _launch_item(runtime, batch, index, body)


async def _launch_item(runtime: Runtime, batch: Batch, index: int, body: str) -> None:
    if body == RETRY:
        await _run_again(runtime, batch, index)
        return
    try:
        submission = await read_submission(
            json.loads(body), None, runtime.settings, batch_item=True
        )
    except InvalidInput as exc:
        # Checked at intake already; the settings may have changed since (a lower limit).
        await _record(runtime, batch, index, "failed", error=_error(exc, index))
        return
    if batch.item_webhooks:
        submission = replace(
            submission, webhook_url=batch.webhook_url, webhook_events=("completed",)
        )
    await launch_job(
        runtime,
        batch.client_id,
        submission,
        job_id=item_job_id(batch.id, index),
        batch_id=batch.id,
        batch_index=index,
        max_attempts=batch.item_attempts,
    )


async def _run_again(runtime: Runtime, batch: Batch, index: int) -> None:
    """A failed item asked to run again: its job's next attempt, with the batch's attempts."""
    job = await runtime.jobs.get(item_job_id(batch.id, index))
    if job is None:
        error = {"code": "INPUT_GONE", "message": "the item's job is no longer kept"}
        await _record(runtime, batch, index, "failed", error=error)
        return
    # None: queued again already (this ran twice after a crash); its end is recorded as it comes.
    await requeue_job(runtime, job, max_attempts=job.attempt + batch.item_attempts)
    await runtime.batches.outcomes.rerun_started(batch.id, index)


# Items ending.


def follow_items(runtime: Runtime) -> None:
    """Have every job's end that `runtime` announces recorded by its batch, if it has one: call
    once, in each process that ends jobs, as it opens its runtime."""
    runtime.job_end.listen(partial(job_ended, runtime))


async def job_ended(runtime: Runtime, job: Job) -> None:
    """An item's final status, recorded by its batch; other jobs are no concern of batches."""
    if job.batch_id is None or job.batch_index is None or job.status not in TERMINAL:
        return
    batch = await runtime.batches.get(job.batch_id)
    if batch is None:
        return
    outcome: Outcome = job.status  # type: ignore[assignment]
    if outcome == "failed" and (job.error or {}).get("code") == PROVIDER_KEYS_EXHAUSTED:
        put_back = await runtime.batches.pauses.put_back(
            batch.id, job.batch_index, _provider_of(job), time.time()
        )
        if put_back == "paused":
            await _announce_pause(runtime, batch.id)
        if put_back != "record":
            return
        # The batch is being canceled: the item did not run, and never will.
        outcome = "canceled"
    await _record(runtime, batch, job.batch_index, outcome, job=job, error=job.error)


def _provider_of(job: Job) -> str:
    # `image.generate` names no provider: OpenAI's images API is the only one it speaks.
    return str(job.input.get("provider") or "openai")


async def _announce_pause(runtime: Runtime, batch_id: str) -> None:
    paused = await runtime.batches.get(batch_id)
    if paused is not None:
        log.warning("batch %s paused: %s", batch_id, paused.paused_reason)
        await _publish(runtime, paused, "batch.paused")


async def record_refused(runtime: Runtime, batch: Batch, index: int, error: dict[str, Any]) -> None:
    """An item refused at intake: it fails on its own, the rest of the batch runs."""
    await _record(runtime, batch, index, "failed", error=error)


async def _record(
    runtime: Runtime,
    batch: Batch,
    index: int,
    outcome: Outcome,
    *,
    job: Job | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    line = json.dumps(item_fields(runtime, index, job, error), separators=(",", ":"))
    settings = runtime.settings
    recorded = await runtime.batches.record(
        batch.id,
        index,
        outcome,
        line,
        error,
        time.time(),
        settings.batches.progress_interval_s,
        max(1, int(batch.total * PROGRESS_STEP)),
        has_job=job is not None,
        # A canceled item's time says nothing of how long items take.
        latency_s=None if outcome == "canceled" else _latency_s(job),
        usage=job.usage if job is not None else None,
        cost_usd=job.cost_usd if job is not None else None,
    )
    if not recorded.new:
        return
    if recorded.paused:
        await _announce_pause(runtime, batch.id)
    if recorded.waiting_bytes >= runtime.storage.min_part_bytes:
        await _store_part(runtime, batch.id, final=False)
    if recorded.progress_due:
        current = await runtime.batches.get(batch.id)
        if current is not None:
            await _publish(runtime, current, "batch.progress")
    if recorded.last:
        await finish(runtime, batch.id)
    elif outcome != "canceled":
        await fill_client(runtime, batch.client_id)


def _latency_s(job: Job | None) -> float | None:
    """From the start of the item's job (its last attempt) to its end."""
    if job is None or job.started_at is None or job.finished_at is None:
        return None
    return max(0.0, job.finished_at - job.started_at)


def _error(exc: InvalidInput, index: int) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "field": exc.field}


# The results file: parts of at least `min_part_bytes`, joined when the batch ends.


async def _store_part(runtime: Runtime, batch_id: str, *, final: bool) -> None:
    """Move waiting result lines to storage as the next part; with `final`, all of them."""
    token = secrets.token_hex(8)
    while not await runtime.batches.lock(batch_id, "part", token, _LOCK_TTL_S):
        if not final:
            return  # another worker is storing a part already
        await asyncio.sleep(0.05)
    try:
        batch = await runtime.batches.get(batch_id)
        if batch is None:
            return
        minimum = 0 if final else runtime.storage.min_part_bytes
        while True:
            lines = await _take_lines(runtime, batch_id, runtime.storage.min_part_bytes)
            size = sum(len(line) + 1 for line in lines)
            if not lines or size < minimum:
                return
            data = b"".join(line + b"\n" for line in lines)
            number = batch.parts + 1
            await runtime.storage.put_part(batch.results_key, batch.upload_id, number, data)
            parts = await runtime.batches.part_stored(batch_id, len(lines), size)
            batch = replace(batch, parts=parts)
            if not final:
                return
    finally:
        await runtime.batches.unlock(batch_id, "part", token)


async def _take_lines(runtime: Runtime, batch_id: str, target: int) -> list[bytes]:
    """Waiting lines from the front, read a chunk at a time until `target` bytes."""
    lines: list[bytes] = []
    size, chunk = 0, 500
    while size < target:
        more = await runtime.batches.waiting_lines(batch_id, len(lines), len(lines) + chunk - 1)
        lines += more
        size += sum(len(line) + 1 for line in more)
        if len(more) < chunk:
            break
    return lines


# The end of a batch.


async def finish(runtime: Runtime, batch_id: str) -> None:
    """Store the last part, join the results file, record the end and announce it. Once."""
    token = secrets.token_hex(8)
    if not await runtime.batches.lock(batch_id, "finish", token, _LOCK_TTL_S):
        return
    try:
        batch = await runtime.batches.get(batch_id)
        if batch is None or batch.status not in _UNENDED:
            return
        rewrite = batch.rewrite
        if rewrite:
            await rewrite_results(runtime, batch)
        else:
            await _store_part(runtime, batch_id, final=True)
        batch = await runtime.batches.get(batch_id)
        if batch is None:
            return
        if not rewrite:
            await runtime.storage.finish_parts(batch.results_key, batch.upload_id, batch.parts)
        status: BatchStatus = "canceled" if batch.cancel else "completed"
        finished_at = time.time()
        await runtime.batches.close(batch, status, finished_at)
        ended = replace(batch, status=status, finished_at=finished_at)
        await _publish(runtime, ended, f"batch.{status}")
        log.info("batch %s %s: %d items", batch.id, status, batch.total)
    finally:
        await runtime.batches.unlock(batch_id, "finish", token)


async def retry(runtime: Runtime, batch: Batch, codes: frozenset[str] | None) -> int:
    """Run the batch's failed items again (those failed with one of `codes`, if given); items
    refused at intake have no job to run and are left as they are. How many will run."""
    chosen: list[int] = []
    after = -1
    while True:
        indexes = await runtime.batches.outcomes.indexes(
            batch.id, "failed", after, 5000, batch.total
        )
        if not indexes:
            break
        errors = await runtime.batches.outcomes.errors(batch.id, indexes)
        chosen += [
            i
            for i, e in errors.items()
            if e.get("job", True) and (codes is None or e.get("code") in codes)
        ]
        after = indexes[-1]
    if not chosen:
        return 0
    # Not while it is being finished: its end would close it over the items queued to run again.
    token = secrets.token_hex(8)
    if not await runtime.batches.lock(batch.id, "finish", token, _LOCK_TTL_S):
        raise Conflict(
            "the batch is being finished; retry in a moment", code="BATCH_FINISHING", field=None
        )
    try:
        queued = await runtime.batches.retry(batch, chosen)
    finally:
        await runtime.batches.unlock(batch.id, "finish", token)
    if queued:
        log.info("batch %s: %d failed items run again", batch.id, queued)
        await fill(runtime, batch.id)
    return queued


async def cancel(runtime: Runtime, batch: Batch) -> bool:
    """Stop starting items, cancel the ones in flight, count the rest as canceled; False when
    the batch is not running."""
    found = await runtime.batches.cancel(batch.id)
    if found is None:
        return False
    first_unclaimed, in_flight = found
    await _cancel_items(runtime, batch, in_flight, first_unclaimed)
    # Failed items asked to run again that had not started stay as they were: failed.
    for index in await runtime.batches.outcomes.drop_retries(batch.id):
        job = await runtime.jobs.get(item_job_id(batch.id, index))
        if job is not None and job.status in TERMINAL:
            await job_ended(runtime, job)
        else:
            await _record(runtime, batch, index, "canceled")
    return True


async def _cancel_items(
    runtime: Runtime, batch: Batch, in_flight: list[int], first_unclaimed: int
) -> None:
    for index in in_flight:
        await _cancel_item(runtime, batch, index)
    for start in range(first_unclaimed, batch.total, 500):
        for index, body in await runtime.batches.entries(batch.id, start, start + 499):
            if body != REFUSED:
                await _record(runtime, batch, index, "canceled")


async def _cancel_item(runtime: Runtime, batch: Batch, index: int) -> None:
    job = await runtime.jobs.get(item_job_id(batch.id, index))
    if job is None:  # claimed, but its job was never made
        await _record(runtime, batch, index, "canceled")
        return
    canceled = await end_job(runtime, job.id, "canceled")
    # It ended on its own and whoever ended it announced it; its batch records it (once) now.
    if canceled is None and job.status in TERMINAL:
        await job_ended(runtime, job)


async def reconcile(runtime: Runtime) -> None:
    """Repair what a crash left: items claimed but never started, ends never recorded, a batch
    whose last item ended but which never finished. Then start whatever may start."""
    for batch_id in await runtime.batches.running():
        batch = await runtime.batches.get(batch_id)
        if batch is None or batch.status not in _UNENDED:
            continue
        try:
            await _reconcile(runtime, batch)
        except Exception:
            log.exception("reconciling batch %s failed; next round tries again", batch_id)


async def _reconcile(runtime: Runtime, batch: Batch) -> None:
    if batch.closing is not None:
        if time.time() - batch.closing > STALLED_CLOSE_S:
            await finish(runtime, batch.id)
        return
    if batch.cancel:  # a cancel cut short
        await _cancel_items(runtime, batch, await runtime.batches.in_flight(batch.id), batch.next)
        return
    rerun = await runtime.batches.outcomes.rerun_pending(batch.id)
    for index in await runtime.batches.in_flight(batch.id):
        if index in rerun:  # its job's end is the attempt before the retry: run it again
            await _run_again(runtime, batch, index)
            continue
        job = await runtime.jobs.get(item_job_id(batch.id, index))
        if job is None:
            entry = await runtime.batches.entry(batch.id, index)
            if entry is not None:
                await _launch_item(runtime, batch, index, entry[1])
        elif job.status in TERMINAL:
            await job_ended(runtime, job)
        elif job.status == "queued":
            # arq ignores an id it still holds, a retry deferred by its backoff included.
            await enqueue_job(runtime.redis, job.id, attempt=job.attempt)
    await fill(runtime, batch.id)


# Events: the batch's live stream always; its webhook when asked for, and matching endpoints.


async def announce(
    runtime: Runtime, batch: Batch, event_type: str, moment: str | None = None
) -> None:
    """Publish one of the batch's events (`batch.failed` when its items could not be read);
    `moment` names what it reports, unique to the batch, when the event type happens often."""
    await _publish(runtime, batch, event_type, moment)


async def _publish(
    runtime: Runtime, batch: Batch, event_type: str, moment: str | None = None
) -> None:
    stats = await runtime.batches.outcomes.stats(batch.id)
    data = batch_view(batch, await failures(runtime, batch), runtime, stats)
    settings = runtime.settings
    await append_event(runtime.redis, batch.id, event_type, data, settings.jobs.event_retention_s)
    subscription = _SUBSCRIPTIONS.get(event_type, "completed")
    wanted = batch.webhook_url is not None and subscription in batch.webhook_events
    # Derived from what the event reports, so announcing it again after a crash is one event; a
    # batch that ends again after a retry ends with an event of its own.
    if event_type == "batch.paused" and batch.paused_at is not None:
        moment = f"paused{round(batch.paused_at * 1000)}"
    moment = moment or {"batch.progress": f"p{batch.done}", "batch.started": "started"}.get(
        event_type
    )
    if moment is None:
        moment = "end" if batch.retries == 0 else f"end{batch.retries}"
    elif event_type == "batch.progress" and batch.retries:
        moment += f"r{batch.retries}"
    await runtime.engine.publish(
        Event(event_type, f"evt_{batch.id.removeprefix('bat_')}_{moment}", data),
        owner=batch.client_id,
        direct_url=batch.webhook_url if wanted else None,
        endpoints=await runtime.endpoints.owned_by(batch.client_id),
    )


# A batch event -> the `webhook_events` subscription that asks for it.
_SUBSCRIPTIONS = {"batch.started": "started", "batch.progress": "progress"}
