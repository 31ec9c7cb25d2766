"""Submitting events for delivery and making each attempt."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx
from arq.connections import ArqRedis

from webhooks.queue import enqueue_attempt
from webhooks.schedule import RetrySchedule
from webhooks.sender import AttemptResult, send
from webhooks.signing import InvalidSecret, webhook_headers
from webhooks.store import Delivery, DeliveryStatus, DeliveryStore

SIGNING_ERROR = "SIGNING_ERROR"

SecretsFor = Callable[[str], Awaitable[Sequence[str]]]
"""Given a delivery's owner, the secrets to sign with (the current one first)."""


@dataclass(frozen=True)
class DeliveryPolicy:
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    connect_timeout_s: float = 5.0
    attempt_deadline_s: float = 15.0
    response_cap_bytes: int = 4096


def delivery_id_for(event_id: str, url: str) -> str:
    """The same event for the same URL is one delivery, however often it is submitted."""
    digest = hashlib.sha256(f"{event_id}\n{url}".encode()).hexdigest()
    return f"dlv_{digest[:26]}"


async def submit(
    store: DeliveryStore,
    redis: ArqRedis,
    *,
    event_id: str,
    event_type: str,
    owner: str,
    url: str,
    payload: bytes,
) -> str:
    """Record a delivery and queue its first attempt; safe to repeat after a crash."""
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
    # Enqueued even when the delivery existed: a crash may have come between create and enqueue.
    # The arq job id and the attempt counter turn a repeat into a no-op.
    await enqueue_attempt(redis, delivery.id, 1)
    return delivery.id


def http_client(policy: DeliveryPolicy) -> httpx.AsyncClient:
    """The one client a delivery worker shares across attempts."""
    timeout = httpx.Timeout(policy.attempt_deadline_s, connect=policy.connect_timeout_s)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)


class Deliverer:
    def __init__(
        self,
        store: DeliveryStore,
        redis: ArqRedis,
        client: httpx.AsyncClient,
        secrets_for: SecretsFor,
        policy: DeliveryPolicy,
    ) -> None:
        self._store = store
        self._redis = redis
        self._client = client
        self._secrets_for = secrets_for
        self._policy = policy

    async def attempt(self, delivery_id: str, number: int) -> AttemptResult | None:
        """Make attempt `number`; None when it was made already or the delivery is settled."""
        delivery = await self._store.get(delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.attempts >= number:
            return None
        started_at = time.time()
        result = await self._send(delivery)
        status: DeliveryStatus = "succeeded" if result.ok else "pending"
        delay = None if result.ok else self._retry_delay(number, result)
        if not result.ok and delay is None:
            status = "dead"
        next_at = None if delay is None else time.time() + delay
        await self._store.record_attempt(
            delivery_id, number, started_at, result, status=status, next_attempt_at=next_at
        )
        if delay is not None:
            await enqueue_attempt(self._redis, delivery_id, number + 1, delay)
        return result

    async def _send(self, delivery: Delivery) -> AttemptResult:
        try:
            secrets = await self._secrets_for(delivery.owner)
            headers = webhook_headers(
                secrets, delivery.event_id, int(time.time()), delivery.payload
            )
        except InvalidSecret as exc:
            return AttemptResult(False, 0.0, error_code=SIGNING_ERROR, error_message=str(exc))
        return await send(
            self._client,
            delivery.url,
            delivery.payload,
            headers,
            deadline_s=self._policy.attempt_deadline_s,
            response_cap=self._policy.response_cap_bytes,
        )

    def _retry_delay(self, number: int, result: AttemptResult) -> float | None:
        if result.error_code == SIGNING_ERROR:
            return None
        return self._policy.schedule.delay_after(number)
