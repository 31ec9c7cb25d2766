"""`/v1/batches/{id}/retry`, `/items` and `/results.csv`: what became of a batch's items, and
running the failed ones again."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from service.api.bodies import parse_json, read_body
from service.api.client_routes import ClientRoute
from service.api.operations import (
    BODY_ERRORS,
    JSON,
    SHAPE_ERRORS,
    Operation,
    Param,
    Reply,
    documented,
)
from service.api.routes.batches import batch_reply, own_batch
from service.batches import engine
from service.batches.items import ended_items, item_page
from service.batches.views import BatchItemPage, BatchView
from service.errors import JOB_ERRORS, InvalidInput
from service.jobs.batch_outcomes import ItemStatus
from service.jobs.batch_store import Batch
from service.runtime import Runtime, runtime
from service.shapes.validation import REQUEST, validated

_MISSING = {404: ("BATCH_NOT_FOUND",)}
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
        (Reply(202, "running again", {JSON: BatchView}),),
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
    return JSONResponse(await batch_reply(request, batch.id), status_code=202)


def _error_codes(body: bytes, rt: Runtime) -> frozenset[str] | None:
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


async def _csv_rows(rt: Runtime, batch: Batch, columns: list[str]) -> AsyncIterator[bytes]:
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
    ClientRoute("/v1/batches/{batch_id}/retry", retry_batch, methods=["POST"]),
    ClientRoute("/v1/batches/{batch_id}/items", batch_items, methods=["GET"]),
    ClientRoute("/v1/batches/{batch_id}/results.csv", results_csv, methods=["GET"]),
]
