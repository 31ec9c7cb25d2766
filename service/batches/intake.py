"""Reading `POST /v1/batches`: a JSON list of items, or a CSV file and an input template.

Problems with the batch itself (no items, too many, a broken template) refuse the request. A
problem with one item (a bad width, a row without a value its template needs) fails that item
only: the batch runs the rest, and the item's error is in the batch's failures and results.
"""

from __future__ import annotations

import csv
import io
import json
import string
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from service.config import Settings
from service.errors import InvalidInput
from service.jobs.batch_store import REFUSED
from service.shapes.fields import DocumentedAs, JsonText
from service.shapes.validation import REQUEST, validated
from service.submission import (
    JOB_MODELS,
    Delivery,
    Reference,
    parse_job_type,
    parse_metadata,
    parse_submission,
    parse_webhook_events,
    parse_webhook_url,
)


class BatchFields(Delivery):
    """What a batch adds to a job's delivery fields."""

    item_webhooks: Annotated[
        bool, Field(description="each item's events too, besides the batch's")
    ] = False
    concurrency: Annotated[int, Field(ge=1)] | None = None
    item_attempts: (
        Annotated[
            int,
            Field(
                ge=1,
                description="runs of an item whose failures may pass (default 3), at most "
                "PIXHOOK_BATCH_MAX_ITEM_ATTEMPTS",
            ),
        ]
        | None
    ) = None


@dataclass(frozen=True)
class BatchModels:
    """A job type's batch bodies: JSON items, or a CSV file's rows and an `input` template."""

    json: type[BaseModel]
    csv: type[BaseModel]
    item: type[BaseModel]


def _batch_models(job_type: str) -> BatchModels:
    name = JOB_MODELS[job_type].__name__.removesuffix("Job")
    tag: Any = Literal[job_type]
    job_input: Any = JOB_MODELS[job_type].model_fields["input"].annotation
    item = create_model(
        f"{name}BatchItem",
        __config__=REQUEST,
        type=(tag | None, None),
        # Validated by `parse_submission`, item by item, so that a bad one fails alone.
        input=(Annotated[Any, DocumentedAs(job_input)], ...),
        metadata=(dict[str, Any] | None, None),
        reference=(Reference | None, None),
    )
    # Each item is validated by itself (`_item_body`), so that a bad one fails alone.
    items = Annotated[list[Annotated[Any, DocumentedAs(item)]], Field(json_schema_extra=_ITEMS)]
    json_batch = create_model(f"{name}Batch", __base__=BatchFields, type=(tag, ...), items=items)
    template = Annotated[dict[str, Any], Field(description="the input of each row: {column}s")]
    csv_batch = create_model(
        f"{name}CsvBatch", __base__=BatchFields, type=(tag, ...), input=(template, ...)
    )
    return BatchModels(json_batch, csv_batch, item)


# Checked after the model, with codes of their own (EMPTY_BATCH, BATCH_TOO_LARGE).
_ITEMS = {"minItems": 1, "description": "at most PIXHOOK_MAX_BATCH_ITEMS"}
BATCH_MODELS = {name: _batch_models(name) for name in JOB_MODELS}


# Any batch, its type saying which (`BatchRequest` in the document): JSON items, or (as the
# multipart part `batch`) the template for CSV rows.
JsonBatchRequest: Any = Annotated[
    Union[tuple(BATCH_MODELS[name].json for name in sorted(BATCH_MODELS))],  # noqa: UP007
    Field(discriminator="type"),
]
CsvBatchRequest: Any = Annotated[
    Union[tuple(BATCH_MODELS[name].csv for name in sorted(BATCH_MODELS))],  # noqa: UP007
    Field(discriminator="type"),
]


class BatchUpload(BaseModel):
    """A batch as multipart/form-data: the batch as JSON in `batch`, its `input` a template
    whose `{column}`s each row of the file `csv` fills."""

    model_config = REQUEST
    batch: Annotated[str, JsonText(CsvBatchRequest)]
    csv: Annotated[bytes, Field(json_schema_extra={"contentMediaType": "text/csv"})]


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
    # Runs of an item whose failures may pass: `_item_attempts` reads and bounds the request's.
    item_attempts: int = 3


def json_batch(spec: Any, settings: Settings) -> BatchRequest:
    """A batch sent as JSON, its items in it."""
    job_type = _job_type(spec)
    batch: Any = validated(BATCH_MODELS[job_type].json, spec, settings)
    return _batch(job_type, batch, batch.items, settings, template=None)


def csv_batch(spec: Any, rows: list[dict[str, str]], settings: Settings) -> BatchRequest:
    """A batch sent as CSV rows, with its JSON `spec`: the rows fill its `input` template."""
    job_type = _job_type(spec)
    batch: Any = validated(BATCH_MODELS[job_type].csv, spec, settings)
    _check_template(batch.input, "input")
    return _batch(job_type, batch, rows, settings, template=batch.input)


def _job_type(spec: Any) -> str:
    if not isinstance(spec, dict):
        raise InvalidInput("the batch must be a JSON object")
    return parse_job_type(spec.get("type"))


def _batch(
    job_type: str,
    batch: BatchFields,
    items: list[Any],
    settings: Settings,
    *,
    template: dict[str, Any] | None,
) -> BatchRequest:
    if not items:
        raise InvalidInput("a batch needs at least one item", code="EMPTY_BATCH", field="items")
    if len(items) > settings.limits.max_batch_items:
        raise InvalidInput(
            f"a batch holds at most {settings.limits.max_batch_items} items, not {len(items)}",
            code="BATCH_TOO_LARGE",
            field="items",
        )
    if batch.item_webhooks and batch.webhook_url is None:
        raise InvalidInput("item_webhooks needs a webhook_url", field="item_webhooks")
    if template is not None:
        bodies = (_render_row(job_type, template, row) for row in items)
    else:
        bodies = (_item_body(job_type, item, settings) for item in items)
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
        webhook_url=parse_webhook_url(batch.webhook_url, settings),
        webhook_events=parse_webhook_events(batch.webhook_events),
        item_webhooks=batch.item_webhooks,
        concurrency=min(
            batch.concurrency or settings.batches.concurrency, settings.batches.concurrency
        ),
        metadata=parse_metadata(batch.metadata, settings),
        item_attempts=_item_attempts(batch.item_attempts, settings),
    )


DEFAULT_ITEM_ATTEMPTS = 3


def _item_attempts(asked: int | None, settings: Settings) -> int:
    most = settings.batches.max_item_attempts
    if asked is not None and asked > most:
        raise InvalidInput(
            f"item_attempts must be at most {most} (PIXHOOK_BATCH_MAX_ITEM_ATTEMPTS)",
            field="item_attempts",
        )
    return min(most, DEFAULT_ITEM_ATTEMPTS) if asked is None else asked


def _item_body(job_type: str, item: Any, settings: Settings) -> dict[str, Any] | InvalidInput:
    if not isinstance(item, dict):
        return InvalidInput("an item must be a job body: an object with input")
    try:
        # Webhooks belong to the batch (`webhook_url`, `item_webhooks`), not to one item.
        validated(BATCH_MODELS[job_type].item, {"input": {}} | item, settings)
    except InvalidInput as exc:
        return exc
    body = {"type": job_type, "input": item.get("input", {}), "metadata": item.get("metadata", {})}
    if item.get("reference") is not None:
        body["reference"] = item["reference"]
    return body


# CSV rows and templates.


def csv_rows(data: bytes, max_rows: int) -> list[dict[str, str]]:
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
