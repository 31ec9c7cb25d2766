"""The webhook events pixhook sends, as pydantic models: one per event type, each the Standard
Webhooks envelope `{type, id, timestamp, data}` that webhooks/events.py writes.

The library in webhooks/ knows event types only as strings; their shapes are declared here, and
the `webhooks` section of /openapi.json and the payload reference in docs/webhooks.md are derived
from them (service/api/event_docs.py).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.batches.views import BatchView
from service.jobs.view_models import JobView, Timestamp, View

JSON = "application/json"


class PingData(View):
    endpoint_id: str
    message: str


class EndpointDisabledData(View):
    """The endpoint's host only, never its URL: some URLs (Slack's) are secrets themselves."""

    id: str
    object: Literal["endpoint"]
    host: str
    description: str
    reason: str | None
    failing_since: Timestamp
    disabled_at: Timestamp


class WebhookEvent(View):
    """The envelope: `id` is the `webhook-id` header too, the same on every retry."""

    type: str
    id: str
    timestamp: Timestamp
    data: View


class JobStartedEvent(WebhookEvent):
    """A worker took the job: it is `running`."""

    type: Literal["job.started"]
    data: JobView


class JobCompletedEvent(WebhookEvent):
    """The job `succeeded`; `data.output` has fresh signed URLs."""

    type: Literal["job.completed"]
    data: JobView


class JobFailedEvent(WebhookEvent):
    """The job `failed`; `data.error` says why."""

    type: Literal["job.failed"]
    data: JobView


class JobCanceledEvent(WebhookEvent):
    """The job was canceled."""

    type: Literal["job.canceled"]
    data: JobView


class BatchStartedEvent(WebhookEvent):
    """The batch's first item started (`webhook_events` must include `started`)."""

    type: Literal["batch.started"]
    data: BatchView


class BatchProgressEvent(WebhookEvent):
    """More of the batch's items ended."""

    type: Literal["batch.progress"]
    data: BatchView


class BatchCompletedEvent(WebhookEvent):
    """Every item ended; `data.results.url` is the JSON Lines file of their results and
    `data.summary` says how it went. After a retry the batch completes again, with an event of
    its own."""

    type: Literal["batch.completed"]
    data: BatchView


class BatchCanceledEvent(WebhookEvent):
    """The batch was canceled."""

    type: Literal["batch.canceled"]
    data: BatchView


class BatchFailedEvent(WebhookEvent):
    """The batch's items could not be read from its `items_url`; `data.error` says why. None of
    its items ran."""

    type: Literal["batch.failed"]
    data: BatchView


class BatchPausedEvent(WebhookEvent):
    """No more of the batch's items start (those in flight finish): `data.paused_reason` is
    `budget` (`data.cost_usd` reached `data.max_cost`) or `keys` (every API key of
    `data.paused_provider` was refused; the items it failed wait to run again). Nothing failed:
    `POST /v1/batches/{id}/resume` runs it again."""

    type: Literal["batch.paused"]
    data: BatchView


class BatchResumedEvent(WebhookEvent):
    """A paused batch runs again: resumed by its client, or by pixhook when the provider it was
    paused for has a usable key again."""

    type: Literal["batch.resumed"]
    data: BatchView


class EndpointDisabledEvent(WebhookEvent):
    """An endpoint was disabled (it failed too long, or answered `410 Gone`); sent to the
    client's other endpoints."""

    type: Literal["endpoint.disabled"]
    data: EndpointDisabledData


class PingEvent(WebhookEvent):
    """`POST /v1/endpoints/{id}/test`, to that endpoint only."""

    type: Literal["ping"]
    data: PingData


def event_type_of(model: type[WebhookEvent]) -> str:
    event_type: str = get_args(model.model_fields["type"].annotation)[0]
    return event_type


# event type -> its model, in the order the docs list them
EVENTS: dict[str, type[WebhookEvent]] = {
    event_type_of(model): model
    for model in (
        JobStartedEvent,
        JobCompletedEvent,
        JobFailedEvent,
        JobCanceledEvent,
        BatchStartedEvent,
        BatchProgressEvent,
        BatchCompletedEvent,
        BatchCanceledEvent,
        BatchFailedEvent,
        BatchPausedEvent,
        BatchResumedEvent,
        EndpointDisabledEvent,
        PingEvent,
    )
}


def event_schemas(ref_template: str = "#/components/schemas/{model}") -> dict[str, Any]:
    """Every event's schema and the schemas they name, by model name, `$ref`s made with
    `ref_template`."""
    models: list[tuple[type[BaseModel], Literal["validation"]]]
    models = [(model, "validation") for model in EVENTS.values()]
    _, top = models_json_schema(models, ref_template=ref_template)
    schemas: dict[str, Any] = top["$defs"]
    return schemas
