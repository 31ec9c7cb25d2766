"""`/v1/batches`: submit many jobs at once, follow them, cancel them."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.admission import require_room
from service.auth import authenticate, runtime
from service.batches import engine
from service.batches.intake import read_batch_request
from service.batches.store import Batch
from service.batches.views import RESULTS_MEDIA_TYPE, batch_view
from service.errors import InvalidInput, NotFound
from service.idempotency import idempotent
from service.ids import new_id
from service.routes.events import BATCH_TERMINAL_EVENTS, sse_response
from service.storage import job_file_key


async def create_batch(request: Request) -> Response:
    rt = runtime(request)
    client = await authenticate(request)
    return await idempotent(request, rt, client, rt.settings.max_batch_bytes, _create_batch)


async def _create_batch(request: Request) -> Response:
    rt = runtime(request)
    client = await authenticate(request)
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
    )
    await rt.batches.create(batch, intake.entries)
    for index, error in intake.refused:
        await engine.record_refused(rt, batch, index, error)
    await engine.fill(rt, batch.id)
    return JSONResponse(await _view(request, batch.id), status_code=202)


async def get_batch(request: Request) -> JSONResponse:
    batch = await own_batch(request)
    return JSONResponse(await _view(request, batch.id))


async def batch_events(request: Request) -> Response:
    batch = await own_batch(request)
    return sse_response(request, batch.id, BATCH_TERMINAL_EVENTS)


async def cancel_batch(request: Request) -> JSONResponse:
    batch = await own_batch(request)
    if not await engine.cancel(runtime(request), batch):
        raise InvalidInput(
            f"the batch has already {batch.status}", code="BATCH_ALREADY_FINISHED", field=None
        )
    return JSONResponse(await _view(request, batch.id))


async def own_batch(request: Request) -> Batch:
    client = await authenticate(request)
    batch_id = request.path_params["batch_id"]
    batch = await runtime(request).batches.get(batch_id)
    # Another client's batch is as absent as a batch that never was.
    if batch is None or batch.client_id != client.id:
        raise NotFound(f"no batch {batch_id}", code="BATCH_NOT_FOUND", field="id")
    return batch


async def _view(request: Request, batch_id: str) -> dict[str, object]:
    rt = runtime(request)
    batch = await rt.batches.get(batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", code="BATCH_NOT_FOUND", field="id")
    return batch_view(batch, await rt.batches.failures(batch_id), rt)


routes = [
    Route("/v1/batches", create_batch, methods=["POST"]),
    Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/v1/batches/{batch_id}/events", batch_events, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
]
