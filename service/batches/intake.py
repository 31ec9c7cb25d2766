"""Reading `POST /v1/batches`: JSON items; or a batch spec and its items as a CSV file (rows
filling an `input` template) or as JSON lines, uploaded or fetched from `items_url`.

Problems with the batch itself (no items, too many, a broken template, a column the file does
not have) refuse the request. A problem with one item (a bad width, a row without a value its
template needs) fails that item only: the batch runs the rest, and the item's error is in the
batch's failures and results. Files are read as they arrive (service/batches/receiving.py);
this module says what each item becomes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from service.batches.item_streams import ItemsFormat
from service.batches.templates import cell, check_template, render
from service.config import Settings
from service.errors import InvalidInput
from service.jobs.batch_store import REFUSED
from service.jobs.usage_totals import MAX_BUDGET_USD, MIN_BUDGET_USD
from service.output_names import check_template as check_output_name
from service.shapes.fields import DocumentedAs, JsonText
from service.shapes.validation import REQUEST, validated
from service.submission import (
    JOB_MODELS,
    MAX_REFERENCE_LENGTH,
    Delivery,
    OutputName,
    Reference,
    parse_job_type,
    parse_metadata,
    parse_submission,
    parse_url,
    parse_webhook_events,
    parse_webhook_url,
)


class BatchFields(Delivery):
    """What a batch adds to a job's delivery fields."""

    item_webhooks: Annotated[
        bool, Field(description="each item's events too, besides the batch's")
    ] = False
    concurrency: Annotated[int, Field(ge=1)] | None = None
    output_name: OutputName | None = None
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
    max_cost: (
        Annotated[
            float,
            Field(
                ge=MIN_BUDGET_USD,
                le=MAX_BUDGET_USD,
                description="US dollars: when its items' provider calls have cost this much, "
                "the batch pauses (`batch.paused`) until resumed; items of a model without a "
                "price are refused (MODEL_NOT_PRICED)",
            ),
        ]
        | None
    ) = None


@dataclass(frozen=True)
class BatchModels:
    """A job type's batch bodies: JSON items, or the spec of items read from a file."""

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
    template = Annotated[
        dict[str, Any] | None,
        Field(description="the input of each CSV row: {column}s; JSON lines carry their own"),
    ]
    column: Any = Annotated[str, Field(min_length=1)]
    reference_column: Any = Annotated[
        column | None, Field(description="the CSV column of each item's reference")
    ]
    metadata_columns: Any = Annotated[
        list[column] | None, Field(description="CSV columns copied into each item's metadata")
    ]
    items_url: Any = Annotated[
        str | None, Field(description="the items file (CSV or JSON lines) to fetch, not uploaded")
    ]
    csv_batch = create_model(
        f"{name}CsvBatch",
        __base__=BatchFields,
        type=(tag, ...),
        input=(template, None),
        reference_column=(reference_column, None),
        metadata_columns=(metadata_columns, None),
        items_url=(items_url, None),
    )
    return BatchModels(json_batch, csv_batch, item)


# Checked after the model, with codes of their own (EMPTY_BATCH, BATCH_TOO_LARGE).
_ITEMS = {"minItems": 1, "description": "at most PIXHOOK_MAX_BATCH_ITEMS"}
BATCH_MODELS = {name: _batch_models(name) for name in JOB_MODELS}


# Any batch, its type saying which (`BatchRequest` in the document): JSON items, or (as the
# multipart part `batch`, or as JSON with `items_url`) the spec of items read from a file.
JsonBatchRequest: Any = Annotated[
    Union[tuple(BATCH_MODELS[name].json for name in sorted(BATCH_MODELS))],  # noqa: UP007
    Field(discriminator="type"),
]
CsvBatchRequest: Any = Annotated[
    Union[tuple(BATCH_MODELS[name].csv for name in sorted(BATCH_MODELS))],  # noqa: UP007
    Field(discriminator="type"),
]


class BatchUpload(BaseModel):
    """A batch as multipart/form-data: first the batch spec as JSON in `batch`, then its items,
    read as they arrive: the file `csv` (rows filling the spec's `input` template), or the
    file `items` (one item body per line, `application/x-ndjson`)."""

    model_config = REQUEST
    batch: Annotated[str, JsonText(CsvBatchRequest)]
    csv: Annotated[bytes | None, Field(json_schema_extra={"contentMediaType": "text/csv"})] = None
    items: Annotated[
        bytes | None, Field(json_schema_extra={"contentMediaType": "application/x-ndjson"})
    ] = None


@dataclass(frozen=True)
class BatchPlan:
    """A batch as its spec describes it, before any item is read."""

    type: str
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    item_webhooks: bool
    concurrency: int
    metadata: dict[str, Any]
    output_name: str | None = None  # each item's, checked once for the whole batch
    template: dict[str, Any] | None = None  # the `input` of each CSV row
    reference_column: str | None = None
    metadata_columns: tuple[str, ...] = ()
    items_url: str | None = None
    # Runs of an item whose failures may pass: `_item_attempts` reads and bounds the request's.
    item_attempts: int = 3
    max_cost: float | None = None  # USD


def json_batch(spec: Any, settings: Settings) -> tuple[BatchPlan, list[Any]]:
    """A batch sent as JSON, its items in it."""
    job_type = _job_type(spec)
    batch: Any = validated(BATCH_MODELS[job_type].json, spec, settings)
    check_count(len(batch.items), settings)
    return _plan(job_type, batch, settings), batch.items


def spec_batch(spec: Any, settings: Settings) -> BatchPlan:
    """A batch whose items come from a file, uploaded or at `items_url`: its JSON `spec`."""
    job_type = _job_type(spec)
    batch: Any = validated(BATCH_MODELS[job_type].csv, spec, settings)
    if batch.input is not None:
        check_template(batch.input, "input")
    if batch.metadata is not None:
        check_template(batch.metadata, "metadata")
    plan = _plan(job_type, batch, settings)
    items_url = (
        None if batch.items_url is None else parse_url(batch.items_url, "items_url", settings)
    )
    return replace(
        plan,
        template=batch.input,
        reference_column=batch.reference_column,
        metadata_columns=tuple(batch.metadata_columns or ()),
        items_url=items_url,
    )


def _job_type(spec: Any) -> str:
    if not isinstance(spec, dict):
        raise InvalidInput("the batch must be a JSON object")
    return parse_job_type(spec.get("type"))


def _plan(job_type: str, batch: Any, settings: Settings) -> BatchPlan:
    if batch.item_webhooks and batch.webhook_url is None:
        raise InvalidInput("item_webhooks needs a webhook_url", field="item_webhooks")
    if batch.output_name is not None:
        check_output_name(batch.output_name)
    return BatchPlan(
        type=job_type,
        webhook_url=parse_webhook_url(batch.webhook_url, settings),
        webhook_events=parse_webhook_events(batch.webhook_events),
        item_webhooks=batch.item_webhooks,
        concurrency=min(
            batch.concurrency or settings.batches.concurrency, settings.batches.concurrency
        ),
        metadata=parse_metadata(batch.metadata, settings),
        output_name=batch.output_name,
        item_attempts=_item_attempts(batch.item_attempts, settings),
        max_cost=batch.max_cost,
    )


def check_count(count: int, settings: Settings) -> None:
    """EMPTY_BATCH for none; BATCH_TOO_LARGE as soon as `count` passes the limit."""
    if count == 0:
        raise InvalidInput("a batch needs at least one item", code="EMPTY_BATCH", field="items")
    if count > settings.limits.max_batch_items:
        raise InvalidInput(
            f"a batch holds at most {settings.limits.max_batch_items} items",
            code="BATCH_TOO_LARGE",
            field="items",
        )


class ItemMaker:
    """Turns each item as read (a JSON item, or a CSV row) into its entry in the batch."""

    field = "items"  # an item's errors are at `items[<index>]`, whatever the source

    def __init__(self, plan: BatchPlan, items_format: ItemsFormat | None) -> None:
        self.plan = plan
        self._csv = items_format == "csv"
        if self._csv and plan.template is None:
            raise InvalidInput(
                "a CSV batch needs an input template: its {column}s take each row's values",
                field="input",
            )
        csv_only = (
            ("input", plan.template is not None),
            ("reference_column", plan.reference_column is not None),
            ("metadata_columns", bool(plan.metadata_columns)),
        )
        for name, given in csv_only:
            if given and not self._csv:
                raise InvalidInput(
                    f"{name} is for CSV rows; JSON items carry their own input, reference "
                    "and metadata",
                    field=name,
                )

    def check_columns(self, columns: Sequence[str]) -> None:
        """A column the spec names that the file's header lacks refuses the batch."""
        named = [self.plan.reference_column, *self.plan.metadata_columns]
        for name in named:
            if name is not None and name not in columns:
                raise InvalidInput(
                    f"the CSV file has no column {name!r}; its columns: {', '.join(columns)}",
                    code="UNKNOWN_COLUMN",
                    field="reference_column"
                    if name == self.plan.reference_column
                    else "metadata_columns",
                )

    def entries(
        self, first: int, items: Sequence[Any], settings: Settings
    ) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
        """Entries `<index>:<job body JSON>` (or `<index>:!`) and the errors of those refused.
        Checking an item's image reads its headers with Pillow: call this in a thread."""
        entries, refused = [], []
        for index, item in enumerate(items, start=first):
            body = self._body(item, settings)
            try:
                if isinstance(body, InvalidInput):
                    raise body
                if self.plan.output_name is not None:
                    body["output_name"] = self.plan.output_name
                submission = parse_submission(body, None, settings, batch_item=True)
                if self.plan.max_cost is not None:
                    check_priced(submission.params, settings)
            except InvalidInput as exc:
                where = f"{self.field}[{index}]"
                field_name = f"{where}.{exc.field}" if exc.field else where
                error = {"code": exc.code, "message": exc.message, "field": field_name}
                refused.append((index, error | self._reference_of(item)))
                entries.append(f"{index}:{REFUSED}")
                continue
            entries.append(f"{index}:{json.dumps(body, separators=(',', ':'))}")
        return entries, refused

    def _reference_of(self, item: Any) -> dict[str, str]:
        """A refused item's reference, when it has a valid one: its failure, in the results
        too, still names the product it is about."""
        value: object = None
        if isinstance(item, dict):
            column = self.plan.reference_column
            value = item.get("reference") if not self._csv else (item.get(column) or "").strip()
        if isinstance(value, str) and _REFERENCE.fullmatch(value):
            return {"reference": value}
        return {}

    def _body(self, item: Any, settings: Settings) -> dict[str, Any] | InvalidInput:
        if self._csv:
            return self._row_body(item)
        return _item_body(self.plan.type, item, settings)

    def _row_body(self, row: dict[str, str]) -> dict[str, Any] | InvalidInput:
        plan = self.plan
        try:
            assert plan.template is not None  # checked as the maker was made
            body: dict[str, Any] = {
                "type": plan.type,
                "input": render(plan.template, row, "input"),
            }
            metadata = render(plan.metadata, row, "metadata") if plan.metadata else {}
            for column in plan.metadata_columns:
                metadata[column] = cell(row, column, "metadata")
            body["metadata"] = metadata
            if plan.reference_column is not None:
                body["reference"] = cell(row, plan.reference_column, "reference")
        except InvalidInput as exc:
            return exc
        return body


def check_priced(params: dict[str, Any], settings: Settings) -> None:
    """MODEL_NOT_PRICED for a job whose provider model has no price: a budget could not count
    what it costs."""
    models = params.get("models") or ([params["model"]] if "model" in params else [])
    if not models or ("provider" in params and params["provider"] is None):
        return  # no provider call
    # `image.generate` names no provider: OpenAI's images API is the only one it speaks.
    provider = str(params.get("provider") or "openai")
    for model in models:
        if settings.providers.prices.get((provider, model)) is None:
            raise InvalidInput(
                f"{provider}/{model} has no price (PIXHOOK_PROVIDER_PRICES): a batch with "
                "max_cost cannot count what it costs",
                code="MODEL_NOT_PRICED",
                field="input.model",
            )


# What a job's `reference` may be (service/submission.py, Reference).
_REFERENCE = re.compile(f"[^\\x00-\\x1f\\x7f]{{1,{MAX_REFERENCE_LENGTH}}}")

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
