"""`/v1/batches`: submit many jobs at once, follow them, cancel them."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing
from typing import Union, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.admission import require_room
from service.api.authentication import client_of
from service.api.batch_upload import BatchUploadReader
from service.api.bodies import accepted_media_type, parse_json, read_json
from service.api.client_routes import ClientRoute
from service.api.idempotency import idempotent, idempotent_upload
from service.api.listing import PAGING, paging, statuses, statuses_param
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
    BatchPlan,
    BatchUpload,
    CsvBatchRequest,
    ItemMaker,
    JsonBatchRequest,
    json_batch,
    spec_batch,
)
from service.batches.items import failures
from service.batches.items_url import cancel_receiving, start_reading
from service.batches.receiving import Received, new_batch, open_batch, stage_file, stage_items
from service.batches.views import BatchPage, BatchView, batch_list_item, batch_view
from service.errors import InvalidInput, NotFound, PayloadTooLarge
from service.ids import new_id
from service.jobs.batch_store import Batch, BatchStatus, BatchStore
from service.runtime import runtime

_BATCH = BatchView
_MISSING = {404: ("BATCH_NOT_FOUND",)}


@documented(
    Operation(
        "Submit a batch: JSON items, a CSV or JSON lines file, or the URL of one",
        (
            Reply(
                202,
                "running, or receiving (its items_url is being read)",
                {JSON: _BATCH},
                REPLAYED,
                links("batch_id", "get_batch", "cancel_batch"),
            ),
        ),
        body={
            JSON: Named("BatchRequest", Union[JsonBatchRequest, CsvBatchRequest]),  # noqa: UP007
            MULTIPART: BatchUpload,
        },
        params=(idempotency_key(),),
        errors={
            **BODY_ERRORS,
            409: IDEMPOTENCY_ERRORS,
            422: (*SHAPE_ERRORS, *URL_ERRORS, "INVALID_MULTIPART", "UNKNOWN_JOB_TYPE")
            + ("EMPTY_BATCH", "BATCH_TOO_LARGE", "INVALID_CSV", "INVALID_JSONL")
            + ("INVALID_TEMPLATE", "UNKNOWN_COLUMN", "BATCH_SPEC_NOT_FIRST", "UPLOAD_TOO_SLOW")
            + ("METADATA_TOO_LARGE", "INVALID_IDEMPOTENCY_KEY", "INVALID_OUTPUT_NAME")
            + ("INVALID_CONVERSATION",),
            429: ("TOO_MANY_JOBS",),
            503: ("STORAGE_UNAVAILABLE",),
        },
    )
)
async def create_batch(request: Request) -> Response:
    rt = runtime(request)
    limits = rt.settings.limits
    if accepted_media_type(request, multipart=True) == MULTIPART:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_batch_upload_bytes:
            raise PayloadTooLarge(
                f"the request body is larger than {limits.max_batch_upload_bytes} bytes"
            )
        limit = limits.max_batch_upload_bytes
        return await idempotent_upload(request, rt, client_of(request), limit, _upload_batch)
    return await idempotent(request, rt, client_of(request), limits.max_batch_bytes, _json_batch)


async def _json_batch(request: Request) -> Response:
    """JSON items, or a spec whose `items_url` a worker reads."""
    rt = runtime(request)
    client = client_of(request)
    settings = rt.settings
    spec = await read_json(request, settings.limits.max_batch_bytes, settings.json_shape)
    if isinstance(spec, dict) and "items_url" in spec:
        return await _url_batch(request, spec)
    plan, items = await asyncio.to_thread(json_batch, spec, settings)
    # Its items count against the quota as they start, a few at a time (its concurrency).
    await require_room(rt, client)
    batch_id = new_id("bat")
    received = await stage_items(rt.batches, batch_id, ItemMaker(plan, None), items, settings)
    return await _open(request, batch_id, plan, received)


async def _url_batch(request: Request, spec: dict[str, object]) -> Response:
    rt = runtime(request)
    client = client_of(request)
    plan = spec_batch(spec, rt.settings)
    if plan.items_url is None:
        raise InvalidInput(
            "items_url must be the URL of a CSV or JSON lines file", field="items_url"
        )
    ItemMaker(plan, "csv" if plan.template is not None else "jsonl")  # its fields fit a format
    await require_room(rt, client)
    batch = new_batch(new_id("bat"), client.id, plan, time.time(), total=0)
    await rt.batches.create_receiving(batch, json.dumps(spec))
    await start_reading(rt, batch.id)
    return JSONResponse(await _view(request, batch.id), status_code=202)


async def _upload_batch(request: Request) -> Response:
    """A multipart body: the spec in `batch`, then the items file, stored as it arrives."""
    rt = runtime(request)
    client = client_of(request)
    settings = rt.settings
    reader = BatchUploadReader(
        request.headers.get("content-type", ""),
        request.stream(),
        limit=settings.limits.max_batch_upload_bytes,
        spec_limit=settings.limits.max_batch_bytes,
    )
    plan = spec_batch(parse_json(await reader.spec(), settings.json_shape), settings)
    if plan.items_url is not None:
        raise InvalidInput("send items_url or a file, not both", field="items_url")
    items_format = await reader.open_items()
    maker = ItemMaker(plan, items_format)
    await require_room(rt, client)
    batch_id = new_id("bat")
    store = rt.batches
    # Closed here, on this loop, when staging stops early: not by the garbage collector.
    async with aclosing(reader.items()) as chunks:
        received = await stage_file(
            store, batch_id, maker, chunks, items_format, settings, reader.part_name
        )
    try:
        await reader.finish()
    except BaseException:
        await store.discard_staged(batch_id)
        raise
    return await _open(request, batch_id, plan, received)


async def _open(request: Request, batch_id: str, plan: BatchPlan, received: Received) -> Response:
    rt = runtime(request)
    batch = new_batch(batch_id, client_of(request).id, plan, time.time(), received.total)
    if not await open_batch(rt, batch, received):
        raise InvalidInput(
            "the upload was too slow: its first items expired before the last arrived (more "
            "than 10 minutes between two chunks of 1,000 items); send it again, faster",
            code="UPLOAD_TOO_SLOW",
            field=None,
        )
    return JSONResponse(await _view(request, batch.id), status_code=202)


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
    if batch.status == "receiving" and await cancel_receiving(rt, batch):
        return JSONResponse(await _view(request, batch.id))
    if not await engine.cancel(rt, batch):
        raise InvalidInput(
            f"the batch has already {batch.status}", code="BATCH_ALREADY_FINISHED", field=None
        )
    return JSONResponse(await _view(request, batch.id))


@documented(
    Operation(
        "The client's batches, newest first",
        (Reply(200, "a page", {JSON: BatchPage}),),
        params=(*PAGING, statuses_param(get_args(BatchStatus))),
        errors={422: ("INVALID_INPUT",)},
    )
)
async def list_batches(request: Request) -> JSONResponse:
    rt = runtime(request)
    limit, cursor = paging(request.query_params)
    wanted = statuses(request.query_params, get_args(BatchStatus))
    found, next_cursor = await rt.batches.page(
        client_of(request).id, wanted, limit=limit, cursor=cursor
    )
    views = [batch_list_item(batch, rt) for batch in found]
    page = {"data": views, "next_cursor": None if next_cursor is None else str(next_cursor)}
    return JSONResponse(BatchPage.render(page))


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
    failed = await failures(rt, batch)
    return batch_view(batch, failed, rt, await rt.batches.outcomes.stats(batch_id))


async def batch_reply(request: Request, batch_id: str) -> dict[str, object]:
    """The batch as these routes answer it, for the routes of its outcomes beside them."""
    return await _view(request, batch_id)


routes = [
    ClientRoute("/v1/batches", create_batch, methods=["POST"]),
    ClientRoute("/v1/batches", list_batches, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/events", batch_events, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
]
