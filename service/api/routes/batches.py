"""`/v1/batches`: submit many jobs at once, follow them, cancel them."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.admission import require_room
from service.api.authentication import client_of
from service.api.bodies import accepted_media_type, parse_json, read_body, read_form
from service.api.client_routes import ClientRoute
from service.api.idempotency import idempotent
from service.api.operations import (
    BODY_ERRORS,
    IDEMPOTENCY_ERRORS,
    JSON,
    MULTIPART,
    REPLAYED,
    SHAPE_ERRORS,
    URL_ERRORS,
    Named,
    Operation,
    Reply,
    documented,
    idempotency_key,
    links,
)
from service.api.routes.live_events import (
    BATCH_TERMINAL_EVENTS,
    BatchStreamEvent,
    sse_response,
    stream_operation,
)
from service.batches import engine
from service.batches.intake import (
    BatchRequest,
    BatchUpload,
    JsonBatchRequest,
    csv_batch,
    csv_rows,
    json_batch,
)
from service.batches.views import RESULTS_MEDIA_TYPE, BatchView, batch_view
from service.config import Settings
from service.errors import InvalidInput, NotFound
from service.ids import new_id
from service.jobs.batch_store import Batch, BatchStore
from service.runtime import runtime
from service.storage import job_file_key

_BATCH = BatchView
_MISSING = {404: ("BATCH_NOT_FOUND",)}


@documented(
    Operation(
        "Submit a batch: JSON items, or a CSV file and an input template",
        (
            Reply(
                202,
                "running",
                {JSON: _BATCH},
                REPLAYED,
                links("batch_id", "get_batch", "cancel_batch"),
            ),
        ),
        body={JSON: Named("BatchRequest", JsonBatchRequest), MULTIPART: BatchUpload},
        params=(idempotency_key(),),
        errors={
            **BODY_ERRORS,
            409: IDEMPOTENCY_ERRORS,
            422: (*SHAPE_ERRORS, *URL_ERRORS, "INVALID_MULTIPART", "UNKNOWN_JOB_TYPE")
            + ("EMPTY_BATCH", "BATCH_TOO_LARGE", "INVALID_CSV", "INVALID_TEMPLATE")
            + ("METADATA_TOO_LARGE", "INVALID_IDEMPOTENCY_KEY"),
            429: ("TOO_MANY_JOBS",),
            503: ("STORAGE_UNAVAILABLE",),
        },
    )
)
async def create_batch(request: Request) -> Response:
    rt = runtime(request)
    limit = rt.settings.limits.max_batch_bytes
    return await idempotent(request, rt, client_of(request), limit, _create_batch)


async def _create_batch(request: Request) -> Response:
    rt = runtime(request)
    client = client_of(request)
    intake = await read_batch_request(request, rt.settings)
    # Its items count against the quota as they start, a few at a time (its concurrency).
    await require_room(rt, client)
    batch_id, created_at = new_id("bat"), time.time()
    results_key = job_file_key(client.id, batch_id, created_at, "results.jsonl")
    batch = Batch(
        id=batch_id,
        client_id=client.id,
        type=intake.type,
        status="running",
        created_at=created_at,
        total=len(intake.entries),
        concurrency=intake.concurrency,
        results_key=results_key,
        upload_id=await rt.storage.start_parts(results_key, media_type=RESULTS_MEDIA_TYPE),
        webhook_url=intake.webhook_url,
        webhook_events=intake.webhook_events,
        item_webhooks=intake.item_webhooks,
        metadata=intake.metadata,
        item_attempts=intake.item_attempts,
    )
    await rt.batches.create(batch, intake.entries)
    for index, error in intake.refused:
        await engine.record_refused(rt, batch, index, error)
    await engine.fill(rt, batch.id)
    return JSONResponse(await _view(request, batch.id), status_code=202)


async def read_batch_request(request: Request, settings: Settings) -> BatchRequest:
    """The batch: JSON items, or a multipart body of the batch as JSON in `batch` (its `input`
    a template) and the rows in the file `csv`. Checking each item's image reads its headers
    with Pillow, so that runs in a thread, as `read_submission` does."""
    media_type = accepted_media_type(request, multipart=True)
    body = await read_body(request, settings.limits.max_batch_bytes)
    if media_type == JSON:
        spec = parse_json(body, settings.json_shape)
        return await asyncio.to_thread(json_batch, spec, settings)
    form = await read_form(request, body, fields=("batch",), files=("csv",))
    spec = parse_json(form["batch"], settings.json_shape)
    rows = csv_rows(form["csv"], settings.limits.max_batch_items)
    return await asyncio.to_thread(csv_batch, spec, rows, settings)


@documented(Operation("A batch", (Reply(200, "the batch", {JSON: _BATCH}),), errors=_MISSING))
async def get_batch(request: Request) -> JSONResponse:
    batch = await own_batch(request, runtime(request).batches)
    return JSONResponse(await _view(request, batch.id))


@documented(stream_operation("batch", BatchStreamEvent))
async def batch_events(request: Request) -> Response:
    batch = await own_batch(request, runtime(request).batches)
    return sse_response(request, batch.id, BATCH_TERMINAL_EVENTS)


@documented(
    Operation(
        "Cancel a running batch",
        (Reply(200, "canceled", {JSON: _BATCH}),),
        errors={**_MISSING, 422: ("BATCH_ALREADY_FINISHED",)},
    )
)
async def cancel_batch(request: Request) -> JSONResponse:
    rt = runtime(request)
    batch = await own_batch(request, rt.batches)
    if not await engine.cancel(rt, batch):
        raise InvalidInput(
            f"the batch has already {batch.status}", code="BATCH_ALREADY_FINISHED", field=None
        )
    return JSONResponse(await _view(request, batch.id))


async def own_batch(request: Request, batches: BatchStore) -> Batch:
    """The batch the path names, if the calling client owns it."""
    batch_id = request.path_params["batch_id"]
    batch = await batches.get(batch_id)
    # Another client's batch is as absent as a batch that never was.
    if batch is None or batch.client_id != client_of(request).id:
        raise NotFound(f"no batch {batch_id}", code="BATCH_NOT_FOUND", field="id")
    return batch


async def _view(request: Request, batch_id: str) -> dict[str, object]:
    rt = runtime(request)
    batch = await rt.batches.get(batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", code="BATCH_NOT_FOUND", field="id")
    failures = await rt.batches.outcomes.failures(batch_id, batch.total)
    return batch_view(batch, failures, rt, await rt.batches.outcomes.stats(batch_id))


async def batch_reply(request: Request, batch_id: str) -> dict[str, object]:
    """The batch as these routes answer it, for the routes of its outcomes beside them."""
    return await _view(request, batch_id)


routes = [
    ClientRoute("/v1/batches", create_batch, methods=["POST"]),
    ClientRoute("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/events", batch_events, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
]
