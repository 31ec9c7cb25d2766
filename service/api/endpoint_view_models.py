"""The shapes the `/v1/endpoints` routes answer with, as pydantic models (see
service/jobs/view_models.py for how a view is built through its model)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from service.jobs.view_models import Count, Timestamp, Url, View
from webhooks import EndpointKind

Secret = Annotated[str, Field(pattern="^whsec_")]
Milliseconds = Annotated[float, Field(ge=0)]


class EndpointFilter(View):
    """Which of the client's events an endpoint receives, beyond its `event_types`."""

    job_types: list[str]
    metadata: dict[str, Any]


class EndpointUrls(View):
    self: Url
    test: Url
    stats: Url
    rotate_secret: Url


class EndpointView(View):
    """An endpoint; header values show only their last characters, its secret never."""

    id: str
    object: Literal["endpoint"]
    url: str
    kind: EndpointKind
    description: str
    event_types: list[str]
    filter: EndpointFilter
    enabled: bool
    disabled_reason: str | None
    disabled_at: Timestamp | None
    headers: dict[str, str]
    # Slack message objects per event type or pattern: see docs/webhooks.md.
    templates: dict[str, Any] | None
    previous_secret_expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    urls: EndpointUrls


class CreatedEndpoint(EndpointView):
    """The only reply that carries the secret, but `GET .../secret`."""

    secret: Secret


class EndpointList(View):
    data: list[EndpointView]


class LatencyMs(View):
    p50: Milliseconds
    p90: Milliseconds
    p99: Milliseconds
    max: Milliseconds


class RecentAttempts(View):
    """The endpoint's latest attempts, which its health is judged by."""

    attempts: Count
    since: Timestamp | None
    success_rate: Annotated[float, Field(ge=0, le=1)] | None
    latency_ms: LatencyMs | None


class LastFailure(View):
    at: Timestamp
    delivery_id: str
    event_type: str
    status_code: int | None
    error_code: str | None
    error_message: str | None


class EndpointStats(View):
    """Attempts, success rate, latency percentiles and the last failure."""

    endpoint_id: str
    attempts: Count
    succeeded: Count
    recent: RecentAttempts
    failing_since: Timestamp | None
    last_success_at: Timestamp | None
    last_failure: LastFailure | None


class EndpointSecret(View):
    secret: Secret


class RotatedSecret(View):
    """A new secret; the previous one keeps signing until `previous_secret_expires_at`."""

    secret: Secret
    previous_secret_expires_at: Timestamp


class TestSend(View):
    """What the endpoint did with a `ping`: one attempt, as a delivery's attempts show."""

    ok: bool
    event_id: str
    status_code: int | None
    duration_ms: Milliseconds
    error_code: str | None
    error_message: str | None
    response_excerpt: str
