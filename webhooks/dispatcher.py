"""The delivery loop: claim due deliveries in batches, send them concurrently, record outcomes."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

import aiohttp
from redis.exceptions import RedisError

from webhooks.attempt import SIGNING_ERROR, attempt_once
from webhooks.circuit import Circuits
from webhooks.dlq import DeadLetters
from webhooks.guard import UrlPolicy
from webhooks.metrics import DeliveryMetrics
from webhooks.schedule import RetrySchedule
from webhooks.sender import (
    DNS_FAILURE,
    GONE,
    GUARD_REFUSED,
    INVALID_URL,
    THROTTLED,
    TIMEOUT,
    AttemptResult,
)
from webhooks.store import Attempt, Delivery, DeliveryStore, Outcome
from webhooks.targets import (
    ENDPOINT_DISABLED_CODE,
    ENDPOINT_GONE,
    SEALED_SECRET_BROKEN,
    Refused,
    Target,
    Targets,
)

log = logging.getLogger("pixhook.deliveries")

# Failures that no later attempt can fix; the delivery goes straight to the dead-letter queue.
FINAL_ERRORS = frozenset(
    {
        GONE,
        GUARD_REFUSED,
        INVALID_URL,
        SIGNING_ERROR,
        ENDPOINT_GONE,
        ENDPOINT_DISABLED_CODE,
        SEALED_SECRET_BROKEN,
    }
)
# Attempts that reached no host: they say nothing of its health.
UNSENT_ERRORS = FINAL_ERRORS - {GONE} | {DNS_FAILURE}


@dataclass(frozen=True)
class DeliveryPolicy:
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    connect_timeout_s: float = 5.0
    attempt_deadline_s: float = 15.0
    response_cap_bytes: int = 4096
    # After a timeout or a 429 the receiver is struggling: give it at least this long.
    throttled_backoff_s: float = 60.0
    max_retry_after_s: float = 6 * 3600.0
    batch_size: int = 100
    max_in_flight: int = 256
    per_host_connections: int = 32
    poll_interval_s: float = 0.02

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is ours: one attempt and the time to record it."""
        return self.attempt_deadline_s + 10.0


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    next_attempt_at: float | None = None


def decide(delivery: Delivery, result: AttemptResult, policy: DeliveryPolicy) -> Decision:
    """Succeeded, dead, or when to try again."""
    if result.ok:
        return Decision("succeeded")
    if result.error_code in FINAL_ERRORS:
        return Decision("dead")
    delay = policy.schedule.delay_after(delivery.attempts + 1 - delivery.schedule_base)
    if delay is None:
        return Decision("dead")
    if result.retry_after_s is not None:
        delay = max(delay, min(result.retry_after_s, policy.max_retry_after_s))
    if result.error_code in (TIMEOUT, THROTTLED):
        delay = max(delay, policy.throttled_backoff_s)
    return Decision("retry", time.time() + delay)


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        session: aiohttp.ClientSession,
        *,
        targets: Targets,
        policy: DeliveryPolicy,
        url_policy: UrlPolicy,
        circuits: Circuits,
        dead_letters: DeadLetters,
        metrics: DeliveryMetrics,
    ) -> None:
        self._store = store
        self._session = session
        self._targets = targets
        self._policy = policy
        self._url_policy = url_policy
        self._circuits = circuits
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._in_flight: dict[asyncio.Task[None], Delivery] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Deliver until `stop()`; what is claimed but unsent then is handed back."""
        while not self._stopping.is_set():
            room = self._policy.max_in_flight - len(self._in_flight)
            if room <= 0:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                claimed = await self._claim_and_start(room)
            except (RedisError, OSError):
                log.exception("claiming deliveries failed; trying again in a second")
                await asyncio.sleep(1.0)
                continue
            if not claimed:
                await self._idle()

    async def _claim_and_start(self, room: int) -> bool:
        # A fresh token per batch: a lease that expired and passed to another worker is told apart.
        token = secrets.token_hex(8)
        claimed = await self._store.claim(
            token, self._policy.lease_s, min(room, self._policy.batch_size)
        )
        self._targets.saw_secrets_version(claimed.secrets_version)
        if claimed.deliveries:
            await self._start(claimed.deliveries, token)
        return bool(claimed.deliveries)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, let attempts under way finish within `grace_s`, hand back the rest."""
        self._stopping.set()
        if self._in_flight:
            done, pending = await asyncio.wait(self._in_flight, timeout=grace_s)
            unfinished = [self._in_flight[task] for task in pending]
            for task in pending:
                task.cancel()
            await self._store.defer([d.id for d in unfinished], time.time())

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), self._policy.poll_interval_s)
        except TimeoutError:
            pass

    async def _start(self, batch: list[Delivery], token: str) -> None:
        resolved = await asyncio.gather(*(self._resolve(delivery) for delivery in batch))
        by_service: dict[str, list[tuple[Delivery, Target]]] = defaultdict(list)
        for delivery, target in zip(batch, resolved, strict=True):
            if target is None:
                continue  # could not be resolved: its lease runs out and it is tried again
            if isinstance(target, Refused):
                self._spawn(delivery, target, token)  # nothing is sent, so no circuit to ask
                continue
            # An endpoint's URL may have changed since the event was queued. The circuit asked,
            # the one told, and the dead-letter host index all follow where it goes now.
            current = delivery if target.url == delivery.url else replace(delivery, url=target.url)
            by_service[current.authority].append((current, target))
        states = await self._circuits.check(by_service)
        for authority, pairs in by_service.items():
            state = states[authority]
            if state.kind == "open":
                # Spread the wake-up so a recovering host is not hit by all of them at once.
                await self._store.defer([d.id for d, _ in pairs], state.retry_at + random.random())
                continue
            if state.kind == "probe":
                pairs, held = pairs[:1], pairs[1:]
                await self._store.defer([d.id for d, _ in held], time.time() + 1.0)
            for delivery, target in pairs:
                self._spawn(delivery, target, token)

    async def _resolve(self, delivery: Delivery) -> Target | Refused | None:
        try:
            return await self._targets.resolve(delivery)
        except Exception:
            log.exception(
                "delivery %s: its target could not be resolved",
                delivery.id,
                extra={"delivery_id": delivery.id, "client_id": delivery.owner},
            )
            return None

    def _spawn(self, delivery: Delivery, target: Target | Refused, token: str) -> None:
        task = asyncio.create_task(self._attempt(delivery, target, token))
        self._in_flight[task] = delivery
        task.add_done_callback(self._in_flight.pop)

    async def _attempt(self, delivery: Delivery, target: Target | Refused, token: str) -> None:
        try:
            await self._attempt_and_record(delivery, target, token)
        except Exception:
            # The lease runs out and the delivery is tried again: at least once, never lost.
            log.exception(
                "delivery %s: attempt could not be completed",
                delivery.id,
                extra={"delivery_id": delivery.id, "client_id": delivery.owner},
            )

    async def _attempt_and_record(
        self, delivery: Delivery, target: Target | Refused, token: str
    ) -> None:
        if isinstance(target, Target):
            wait_s = await self._targets.wait_s(delivery, target)
            if wait_s > 0:
                # A paced channel is busy: the delivery waits for its slot, spending no attempt.
                await self._store.defer([delivery.id], time.time() + wait_s)
                return
        started_at = time.time()
        result, sent_headers = await self._send(delivery, target)
        decision = decide(delivery, result, self._policy)
        attempt = Attempt(
            number=delivery.attempts + 1,
            started_at=started_at,
            ok=result.ok,
            duration_ms=round(result.duration_ms, 2),
            status_code=result.status_code,
            error_code=result.error_code,
            error_message=result.error_message,
            response_excerpt=result.response_excerpt,
            request_headers=sent_headers,
        )
        # A death no attempt can fix (a 410, a refusal) is never re-sent unasked.
        final = result.error_code in FINAL_ERRORS
        dead_for_host = await self._store.record(
            delivery,
            token,
            attempt,
            decision.outcome,
            decision.next_attempt_at,
            redrive_limit=0 if final else self._dead_letters.policy.redrive_limit,
        )
        settled = decision.outcome if dead_for_host is not None else None
        # Metrics and the breaker's verdict share one round trip.
        async with self._store.redis.pipeline(transaction=False) as pipe:
            await self._metrics.observe(attempt, settled, delivery.owner, client=pipe)
            if result.error_code not in UNSENT_ERRORS:
                await self._circuits.report(
                    delivery.authority, result.blame, delivery.url, started_at, client=pipe
                )
            await pipe.execute()
        if isinstance(target, Target) and dead_for_host is not None:
            await self._targets.settle(delivery, target, result)
        if dead_for_host:
            await self._dead_letters.redrive(delivery.authority)
        if decision.outcome == "dead" and dead_for_host is not None:
            log.warning(
                "delivery %s to %s is dead after %d attempts (%s)",
                delivery.id,
                delivery.host,
                attempt.number,
                result.error_code,
                extra={"delivery_id": delivery.id, "client_id": delivery.owner},
            )

    async def _send(
        self, delivery: Delivery, target: Target | Refused
    ) -> tuple[AttemptResult, dict[str, str]]:
        """The attempt's result, and the headers it sent as the attempt log keeps them."""
        return await attempt_once(
            self._session,
            target,
            delivery.event_id,
            delivery.payload,
            url_policy=self._url_policy,
            deadline_s=self._policy.attempt_deadline_s,
            response_cap=self._policy.response_cap_bytes,
        )
