"""The shapes the API answers with, declared once as pydantic models.

A view is built by validating its fields into its model and dumping it back to JSON
(`View.json_view`), so what a route answers and what /openapi.json says it answers are one
declaration. Models are closed (`extra="forbid"`, `additionalProperties: false`), and a field that
some views leave out (an analysis without a provider, say) has a default and is dumped only when
it was given.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from service.jobs.index import CURSOR_PATTERN
from service.jobs.model import JobStatus
from service.jobs.outputs import JobOutput
from webhooks import DeliveryStatus

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Url = Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]
Count = Annotated[int, Field(ge=0)]
# A whole number stays one in the JSON (a `float` field would write 5 as 5.0).
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
# What a job or batch's `webhook_events` may ask for.
Subscription = Literal["started", "progress", "completed"]


class View(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def render(cls, fields: dict[str, Any]) -> dict[str, Any]:
        """The JSON the API answers: these fields, checked against the model, none added."""
        return cls.model_validate(fields).model_dump(mode="json", exclude_unset=True)


# Jobs.


class JobError(View):
    code: str
    message: str
    # Whether another attempt may succeed (docs/errors.md, Job errors); absent on older jobs.
    retryable: bool | None = None


class JobBatch(View):
    """The batch a job is an item of, and its position in it."""

    id: str
    index: int | None


class TokenCounts(View):
    """Provider tokens by kind: `input_tokens` excludes what the provider read from its prompt
    cache (`cached_input_tokens`, billed lower); images count as the provider counts them."""

    input_tokens: Count
    output_tokens: Count
    cached_input_tokens: Count


class JobUrls(View):
    self: Url
    events: Url
    cancel: Url
    # For people (a Slack message links it): the console asks them to sign in, where the API
    # would answer 401.
    console: Url


class JobView(View):
    """A job, in `GET /v1/jobs/{id}` and in the `data` of its webhook events."""

    id: str
    type: str
    status: JobStatus
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    # The parameters as the job type normalised them, and the image as a description.
    input: dict[str, Any]
    output: JobOutput | None
    error: JobError | None
    metadata: dict[str, Any]
    reference: str | None
    webhook_url: str | None
    webhook_events: list[Subscription]
    sequence: Count
    batch: JobBatch | None
    # This run of the job, from 1; a transient failure is run again up to `max_attempts`.
    attempt: Annotated[int, Field(ge=1)]
    max_attempts: Annotated[int, Field(ge=1)]
    # The errors of the runs before this one, oldest first.
    earlier_errors: list[JobError]
    # What its provider call cost: null without one. An answer from pixhook's cache paid
    # nothing (0 tokens, cost 0); cost_usd is null too for a model without a price.
    usage: TokenCounts | None = None
    cost_usd: Annotated[float, Field(ge=0)] | None = None
    urls: JobUrls


# Deliveries.


class DeliveryView(View):
    """A delivery as callers see it: everything but the payload."""

    id: str
    event_id: str
    event_type: str
    url: str
    host: str
    status: DeliveryStatus
    attempt_count: Count
    replays: Count
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    dead_at: Timestamp | None
    last_error: str | None
    last_status_code: int | None
    endpoint_id: str | None


class AttemptView(View):
    """One attempt at a delivery."""

    number: int
    started_at: Timestamp
    duration_ms: float
    status_code: int | None
    error_code: str | None
    error_message: str | None
    response_excerpt: str


class JobWithDeliveries(JobView):
    """What the job routes answer: the job and its deliveries so far."""

    deliveries: list[DeliveryView]


class DeliveryWithAttempts(DeliveryView):
    attempts: list[AttemptView]


class DeliveryPage(View):
    """A page of deliveries, newest first; `next_cursor` asks for the next one."""

    data: list[DeliveryView]
    next_cursor: Annotated[str, Field(pattern="^[0-9]+$")] | None


class JobPage(View):
    """A page of jobs, newest first; `next_cursor` asks for the next one (null: no more)."""

    data: list[JobView]
    next_cursor: Annotated[str, Field(pattern=f"^{CURSOR_PATTERN.pattern}$")] | None


class Requeued(View):
    """How many dead deliveries a replay put back in the queue."""

    requeued: int
