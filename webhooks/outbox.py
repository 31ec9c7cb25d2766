"""Handing an event to the delivery engine."""

from __future__ import annotations

import hashlib
import time

from webhooks.store import Delivery, DeliveryStore


def delivery_id_for(event_id: str, url: str) -> str:
    """The same event for the same URL is one delivery, however often it is submitted."""
    digest = hashlib.sha256(f"{event_id}\n{url}".encode()).hexdigest()
    return f"dlv_{digest[:26]}"


async def submit(
    store: DeliveryStore,
    *,
    event_id: str,
    event_type: str,
    owner: str,
    url: str,
    payload: bytes,
) -> str:
    """Record a delivery, due at once; repeating it (after a crash) changes nothing."""
    delivery = Delivery(
        id=delivery_id_for(event_id, url),
        event_id=event_id,
        event_type=event_type,
        owner=owner,
        url=url,
        payload=payload,
        created_at=time.time(),
    )
    await store.create(delivery)
    return delivery.id
