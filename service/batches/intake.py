"""Reading `POST /v1/batches`: a JSON list of items, or a CSV file and an input template.

Problems with the batch itself (no items, too many, a broken template) refuse the request. A
problem with one item (a bad width, a row without a value its template needs) fails that item
only: the batch runs the rest, and the item's error is in the batch's failures and results.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import string
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from service.batches.store import REFUSED
from service.bodies import JSON, accepted_media_type, parse_json, read_body, read_form
from service.config import Settings
from service.errors import InvalidInput
from service.submission import (
    parse_job_type,
    parse_metadata,
    parse_submission,
    parse_webhook_events,
    parse_webhook_url,
)
from service.unknown_fields import refuse_unknown_fields

_BATCH_FIELDS = frozenset(
    {"type", "items", "input", "webhook_url", "webhook_events", "item_webhooks"}
    | {"concurrency", "metadata"}
)
_ITEM_FIELDS = frozenset({"type", "input", "metadata"})


@dataclass(frozen=True)
class BatchRequest:
    type: str
    # One entry per item, in order: `<index>:<job body JSON>`, or `<index>:!` when refused.
    entries: list[str]
    refused: list[tuple[int, dict[str, Any]]]  # (index, error) of the items refused
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    item_webhooks: bool
    concurrency: int
    metadata: dict[str, Any] = field(default_factory=dict)


async def read_batch_request(request: Request, settings: Settings) -> BatchRequest:
    media_type = accepted_media_type(request, multipart=True)
    body = await read_body(request, settings.max_batch_bytes)
    if media_type == JSON:
        spec = parse_json(body, settings.json_shape)
        _require_object(spec)
        items = spec.get("items")
        if not isinstance(items, list):
            raise InvalidInput("items must be a list of job bodies", field="items")
        # In a thread, as `read_submission` does: each item's image headers are Pillow's work.
        return await asyncio.to_thread(_batch, spec, items, settings, from_csv=False)
    form = await read_form(request, body, fields=("batch",), files=("csv",))
    spec = parse_json(form["batch"], settings.json_shape)
    _require_object(spec)
    if "items" in spec:
        raise InvalidInput("send items as JSON, or a CSV file, not both", field="items")
    rows = _csv_rows(form["csv"], settings.max_batch_items)
    return await asyncio.to_thread(_batch, spec, rows, settings, from_csv=True)


def _require_object(spec: Any) -> None:
    if not isinstance(spec, dict):
        raise InvalidInput("the batch must be a JSON object")
    refuse_unknown_fields(spec, _BATCH_FIELDS)


def _batch(
    spec: dict[str, Any], items: list[Any], settings: Settings, *, from_csv: bool
) -> BatchRequest:
    job_type = parse_job_type(spec.get("type"))
    if not items:
        raise InvalidInput("a batch needs at least one item", code="EMPTY_BATCH", field="items")
    if len(items) > settings.max_batch_items:
        raise InvalidInput(
            f"a batch holds at most {settings.max_batch_items} items, not {len(items)}",
            code="BATCH_TOO_LARGE",
            field="items",
        )
    webhook_url = spec.get("webhook_url")
    item_webhooks = spec.get("item_webhooks", False)
    if not isinstance(item_webhooks, bool):
        raise InvalidInput("item_webhooks must be true or false", field="item_webhooks")
    if item_webhooks and webhook_url is None:
        raise InvalidInput("item_webhooks needs a webhook_url", field="item_webhooks")
    if from_csv:
        template = spec.get("input")
        if not isinstance(template, dict):
            raise InvalidInput("input must be an object: the template for each row", field="input")
        _check_template(template, "input")
        bodies = (_render_row(job_type, template, row) for row in items)
    elif "input" in spec:
        raise InvalidInput("input is the template for CSV rows; JSON items carry their own")
    else:
        bodies = (_item_body(job_type, item) for item in items)
    entries, refused = [], []
    for index, body in enumerate(bodies):
        try:
            if isinstance(body, InvalidInput):
                raise body
            parse_submission(body, None, settings)
        except InvalidInput as exc:
            field_name = f"items[{index}].{exc.field}" if exc.field else f"items[{index}]"
            error = {"code": exc.code, "message": exc.message, "field": field_name}
            refused.append((index, error))
            entries.append(f"{index}:{REFUSED}")
            continue
        entries.append(f"{index}:{json.dumps(body, separators=(',', ':'))}")
    return BatchRequest(
        type=job_type,
        entries=entries,
        refused=refused,
        webhook_url=parse_webhook_url(webhook_url, settings),
        webhook_events=parse_webhook_events(spec.get("webhook_events")),
        item_webhooks=item_webhooks,
        concurrency=_concurrency(spec.get("concurrency"), settings),
        metadata=parse_metadata(spec.get("metadata"), settings),
    )


def _item_body(job_type: str, item: Any) -> dict[str, Any] | InvalidInput:
    if not isinstance(item, dict):
        return InvalidInput("an item must be a job body: an object with input")
    try:
        # Webhooks belong to the batch (`webhook_url`, `item_webhooks`), not to one item.
        refuse_unknown_fields(item, _ITEM_FIELDS)
    except InvalidInput as exc:
        return exc
    if item.get("type", job_type) != job_type:
        return InvalidInput(f"every item of this batch is a {job_type} job", field="type")
    return {"type": job_type, "input": item.get("input", {}), "metadata": item.get("metadata", {})}


# CSV rows and templates.


def _csv_rows(data: bytes, max_rows: int) -> list[dict[str, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the CSV file must be UTF-8", code="INVALID_CSV", field="csv") from exc
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        if not reader.fieldnames:
            raise InvalidInput("the CSV file has no header row", code="INVALID_CSV", field="csv")
        rows = []
        for row in reader:
            rows.append({k: v for k, v in row.items() if isinstance(k, str)})
            if len(rows) > max_rows:
                break  # enough to say it is too many, without reading the rest
    except csv.Error as exc:
        raise InvalidInput(
            f"the CSV file is malformed at line {reader.line_num}: {exc}",
            code="INVALID_CSV",
            field="csv",
        ) from exc
    return rows


def _check_template(value: Any, where: str) -> None:
    """Placeholders are plain column names: `{name}`, never `{0}`, `{a.b}` or `{a[0]}`."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_template(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            _check_template(inner, f"{where}[{position}]")
    elif isinstance(value, str):
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise InvalidInput(
                f"{where} is not a valid template: {exc}", code="INVALID_TEMPLATE", field=where
            ) from exc
        for name in names:
            if not name.isidentifier():
                raise InvalidInput(
                    f"{where}: placeholders name a CSV column, like {{color}}; not {{{name}}}",
                    code="INVALID_TEMPLATE",
                    field=where,
                )


def _render_row(job_type: str, template: dict[str, Any], row: dict[str, str]) -> Any:
    try:
        rendered = _render(template, row, "input")
    except InvalidInput as exc:
        return exc
    return {"type": job_type, "input": rendered, "metadata": {}}


def _render(value: Any, row: dict[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {key: _render(inner, row, f"{where}.{key}") for key, inner in value.items()}
    if isinstance(value, list):
        return [_render(inner, row, f"{where}[{n}]") for n, inner in enumerate(value)]
    if not isinstance(value, str):
        return value
    names = [name for _, name, _, _ in string.Formatter().parse(value) if name]
    # An empty cell is as missing as an absent column: "photo of , white background" helps no one.
    missing = [name for name in names if not (row.get(name) or "").strip()]
    if missing:
        raise InvalidInput(
            f"the row has no value for {{{missing[0]}}}", code="TEMPLATE_FIELD_MISSING", field=where
        )
    return value.format_map({name: row[name].strip() for name in names})


def _concurrency(value: Any, settings: Settings) -> int:
    if value is None:
        return settings.batch_concurrency
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value:
        raise InvalidInput("concurrency must be a positive whole number", field="concurrency")
    return min(value, settings.batch_concurrency)
