"""Handing an event to the delivery engine."""

from __future__ import annotations

import hashlib
import time

from webhooks.store import Delivery, DeliveryStore


def delivery_id_for(event_id: str, target: str) -> str:
    """The same event for the same target (a URL, or an endpoint) is one delivery, however often
    it is submitted."""
    digest = hashlib.sha256(f"{event_id}\n{target}".encode()).hexdigest()
    return f"dlv_{digest[:26]}"


async def submit(
    store: DeliveryStore,
    *,
    event_id: str,
    event_type: str,
    owner: str,
    url: str,
    payload: bytes,
    endpoint_id: str | None = None,
) -> str:
    """Record a delivery, due at once; repeating it (after a crash) changes nothing."""
    # Per endpoint, not per URL: two endpoints on one URL (a CMS and its staging copy with other
    # filters) each get their own delivery.
    target = url if endpoint_id is None else f"endpoint:{endpoint_id}"
    delivery = Delivery(
        id=delivery_id_for(event_id, target),
        event_id=event_id,
        event_type=event_type,
        owner=owner,
        url=url,
        payload=payload,
        created_at=time.time(),
        endpoint_id=endpoint_id,
    )
    await store.create(delivery)
    return delivery.id
