"""`/v1/batches`: submit many jobs at once, follow them, cancel them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

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
    Param,
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
from service.batches.items import ended_items, item_page
from service.batches.views import RESULTS_MEDIA_TYPE, BatchItemPage, BatchView, batch_view
from service.config import Settings
from service.errors import JOB_ERRORS, InvalidInput, NotFound
from service.ids import new_id
from service.jobs.batch_store import Batch, BatchStore, ItemStatus
from service.runtime import runtime
from service.shapes.validation import REQUEST, validated
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
    failures = await rt.batches.failures(batch_id, batch.total)
    return batch_view(batch, failures, rt, await rt.batches.stats(batch_id))


# Outcomes: run failed items again, page the items, the results as CSV.

MAX_ITEMS_PAGE = 500
_DIGITS = re.compile(r"[0-9]{1,18}")
ITEM_STATUSES: tuple[str, ...] = get_args(ItemStatus)


class BatchRetry(BaseModel):
    """Which failed items to run again: those failed with one of `error_codes`, or all."""

    model_config = REQUEST
    error_codes: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=100)]],
            Field(min_length=1, max_length=len(JOB_ERRORS)),
        ]
        | None
    ) = None


@documented(
    Operation(
        "Run a batch's failed items again: all, or those failed with given error codes",
        (Reply(202, "running again", {JSON: _BATCH}),),
        body={JSON: BatchRetry},
        errors={
            **_MISSING,
            **BODY_ERRORS,
            409: ("BATCH_FINISHING",),
            422: (*SHAPE_ERRORS, "UNKNOWN_ERROR_CODE", "NOTHING_TO_RETRY", "BATCH_CANCELED"),
        },
        description="Each item keeps its index, reference and metadata and runs its job again "
        "(the same job id, its next attempt). The batch is `running` until they end; its "
        "results file is then written anew, one line per item with its latest outcome.",
    )
)
async def retry_batch(request: Request) -> JSONResponse:
    rt = runtime(request)
    batch = await own_batch(request, rt.batches)
    codes = _error_codes(await read_body(request, rt.settings.limits.max_request_bytes), rt)
    if batch.status == "canceled":
        raise InvalidInput(
            "the batch was canceled: submit its items again instead", code="BATCH_CANCELED"
        )
    if not await engine.retry(rt, batch, codes):
        which = "with those error codes " if codes else ""
        raise InvalidInput(
            f"the batch has no failed items {which}that can run again (items refused at "
            "intake cannot)",
            code="NOTHING_TO_RETRY",
        )
    return JSONResponse(await _view(request, batch.id), status_code=202)


def _error_codes(body: bytes, rt: Any) -> frozenset[str] | None:
    if not body.strip():
        return None
    accepted = validated(BatchRetry, parse_json(body, rt.settings.json_shape), rt.settings)
    if accepted.error_codes is None:
        return None
    for position, code in enumerate(accepted.error_codes):
        if code not in JOB_ERRORS:
            raise InvalidInput(
                f"{code!r} is not a job error code; these are: {', '.join(sorted(JOB_ERRORS))}",
                code="UNKNOWN_ERROR_CODE",
                field=f"error_codes[{position}]",
            )
    return frozenset(accepted.error_codes)


@documented(
    Operation(
        "A batch's items, in index order: all that ended, or those of one status",
        (Reply(200, "a page of items", {JSON: BatchItemPage}),),
        params=(
            Param("status", "query", {"type": "string", "enum": list(ITEM_STATUSES)}),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS_PAGE}),
            Param(
                "cursor",
                "query",
                {"type": "string", "pattern": "^[0-9]{1,18}$"},
                "`next_cursor` of the previous page",
            ),
        ),
        errors={**_MISSING, 422: ("INVALID_INPUT",)},
    )
)
async def batch_items(request: Request) -> JSONResponse:
    rt = runtime(request)
    batch = await own_batch(request, rt.batches)
    query = request.query_params
    status = query.get("status")
    if status is not None and status not in ITEM_STATUSES:
        raise InvalidInput(f"status must be one of: {', '.join(ITEM_STATUSES)}", field="status")
    limit = _whole(query.get("limit", "100"), "limit", "a whole number from 1 to 500")
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise InvalidInput("limit must be a whole number from 1 to 500", field="limit")
    cursor = query.get("cursor")
    after = -1 if cursor is None else _whole(cursor, "cursor", "a next_cursor of an earlier page")
    items = await item_page(rt, batch, status, after, limit)  # type: ignore[arg-type]
    next_cursor = str(items[-1]["index"]) if len(items) == limit else None
    return JSONResponse(BatchItemPage.render({"data": items, "next_cursor": next_cursor}))


def _whole(value: str, name: str, what: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise InvalidInput(f"{name} must be {what}", field=name)
    return int(value)


CSV_COLUMNS = ("index", "reference", "status", "error_code", "error_message", "attempts", "job_id")


@documented(
    Operation(
        "The batch's results as CSV: one row per ended item, in index order",
        (Reply(200, "the rows", {"text/csv": {"type": "string"}}),),
        errors=_MISSING,
        description="Columns: index, reference, status, error_code, error_message, attempts, "
        "job_id, one `url_<name>` per output image name any item has, and metadata (JSON).",
    )
)
async def results_csv(request: Request) -> Response:
    rt = runtime(request)
    batch = await own_batch(request, rt.batches)
    # A first pass for the output names: the header needs them all, and rows stream after it.
    names: set[str] = set()
    async for item in ended_items(rt, batch):
        names.update(image["name"] for image in _images(item) if image.get("name"))
    columns = [*CSV_COLUMNS, *(f"url_{name}" for name in sorted(names)), "metadata"]
    headers = {"content-disposition": f'attachment; filename="{batch.id}-results.csv"'}
    return StreamingResponse(
        _csv_rows(rt, batch, columns), media_type="text/csv; charset=utf-8", headers=headers
    )


async def _csv_rows(rt: Any, batch: Batch, columns: list[str]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    async for item in ended_items(rt, batch):
        error = item["error"] or {}
        row: dict[str, Any] = {
            "index": item["index"],
            "reference": item["reference"] or "",
            "status": item["status"],
            "error_code": error.get("code", ""),
            "error_message": error.get("message", ""),
            "attempts": item["attempts"],
            "job_id": item["job_id"] or "",
            "metadata": json.dumps(item["metadata"], separators=(",", ":"))
            if item["metadata"]
            else "",
        }
        row |= {f"url_{image['name']}": image["url"] for image in _images(item)}
        writer.writerow([row.get(column, "") for column in columns])
        if buffer.tell() >= 64 * 1024:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _images(item: dict[str, Any]) -> list[dict[str, Any]]:
    images = (item["output"] or {}).get("images") or []
    return [image for image in images if isinstance(image, dict)]


routes = [
    ClientRoute("/v1/batches", create_batch, methods=["POST"]),
    ClientRoute("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/events", batch_events, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    ClientRoute("/v1/batches/{batch_id}/retry", retry_batch, methods=["POST"]),
    ClientRoute("/v1/batches/{batch_id}/items", batch_items, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/results.csv", results_csv, methods=["GET"]),
]
