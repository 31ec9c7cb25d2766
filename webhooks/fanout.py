"""One event to every target that wants it: the per-job URL and each matching endpoint, each its
own delivery, so one receiver being down never holds up another."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhooks.endpoints import Endpoint
from webhooks.events import event_body, utc_timestamp
from webhooks.outbox import submit
from webhooks.slack import SlackWording, is_slack_url, slack_body
from webhooks.store import DeliveryStore


@dataclass(frozen=True)
class Event:
    type: str
    id: str
    data: Mapping[str, Any]
    timestamp: str = field(default_factory=utc_timestamp)

    def envelope(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "timestamp": self.timestamp, "data": self.data}

    def body(self) -> bytes:
        return event_body(self.type, self.id, dict(self.data), self.timestamp)


def body_for(
    event: Event, url: str, wording: SlackWording, endpoint: Endpoint | None = None
) -> bytes:
    """What is sent: the event itself, or a Slack message about it for a Slack channel."""
    if endpoint is not None and endpoint.kind == "slack":
        return slack_body(event.envelope(), wording, endpoint.templates)
    if endpoint is None and is_slack_url(url):
        return slack_body(event.envelope(), wording)
    return event.body()


async def fan_out(
    deliveries: DeliveryStore,
    event: Event,
    *,
    owner: str,
    direct_url: str | None,
    endpoints: Iterable[Endpoint],
    wording: SlackWording,
) -> list[str]:
    """Queue the event for `direct_url` (if any) and every endpoint that matches it; the ids of
    the deliveries. Repeating it (after a crash) queues nothing new."""
    targets: list[tuple[str, Endpoint | None]] = []
    if direct_url is not None:
        targets.append((direct_url, None))
    targets += [(e.url, e) for e in endpoints if e.matches(event.type, event.data)]
    delivery_ids = []
    for url, endpoint in targets:
        delivery_id = await submit(
            deliveries,
            event_id=event.id,
            event_type=event.type,
            owner=owner,
            url=url,
            payload=body_for(event, url, wording, endpoint),
            endpoint_id=None if endpoint is None else endpoint.id,
        )
        delivery_ids.append(delivery_id)
    return delivery_ids
