"""The delivery engine as one object, built from one config: its stores (what an API reads), the
outbox (what an application publishes to), the dispatcher (what a worker runs) and an endpoint's
test send, which takes the same attempt path as every delivery."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from webhooks.attempt import attempt_once
from webhooks.circuit import CircuitPolicy, Circuits
from webhooks.connector import open_session
from webhooks.dispatcher import DeliveryPolicy, Dispatcher
from webhooks.dlq import DeadLetters, DlqPolicy
from webhooks.endpoints import PING, Endpoint, EndpointStore
from webhooks.fanout import Event, body_for, fan_out
from webhooks.guard import UrlPolicy
from webhooks.metrics import DeliveryMetrics
from webhooks.pacing import Pacer
from webhooks.sealing import Sealer
from webhooks.sender import AttemptResult
from webhooks.slack import SLACK_INTERVAL_S, SlackWording
from webhooks.store import DeliveryStore
from webhooks.targets import Refused, SecretsFor, Targets, endpoint_target, observe_attempt

# A test send to a paced channel waits up to this long for its slot; a longer backlog answers
# CHANNEL_BUSY at once rather than holding the request.
MAX_PACED_WAIT_S = 10.0
CHANNEL_BUSY = "CHANNEL_BUSY"


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine is built from, read from the application's settings once.

    `sealer` seals endpoint secrets and headers at rest; `slack_wording` says what events read
    like in a Slack channel; `delivery` holds the schedule, timeouts and concurrency; `url_policy`
    is the SSRF guard's; `retention_s` is how long delivery records are kept."""

    sealer: Sealer
    slack_wording: SlackWording
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    dlq: DlqPolicy = field(default_factory=DlqPolicy)
    retention_s: int = 7 * 86400
    # An endpoint whose every attempt failed for this long is disabled.
    endpoint_disable_after_s: float = 5 * 86400.0
    slack_interval_s: float = SLACK_INTERVAL_S


class Engine:
    """`owner_secrets` gives the secrets to sign an owner's per-job URL deliveries with."""

    def __init__(self, redis: Redis, config: EngineConfig, owner_secrets: SecretsFor) -> None:
        self.config = config
        self.deliveries = DeliveryStore(redis, retention_s=config.retention_s)
        self.endpoints = EndpointStore(redis, config.sealer)
        self.dead_letters = DeadLetters(self.deliveries, config.dlq)
        self.circuits = Circuits(redis, config.circuit)
        self.metrics = DeliveryMetrics(redis)
        self._redis = redis
        self._pacer = Pacer(redis, interval_s=config.slack_interval_s)
        self._targets = Targets(
            owner_secrets,
            self.endpoints,
            self.deliveries,
            self._pacer,
            config.slack_wording,
            disable_after_s=config.endpoint_disable_after_s,
        )
        self._dispatcher: Dispatcher | None = None
        self._stopping = False

    async def publish(
        self,
        event: Event,
        *,
        owner: str,
        direct_url: str | None,
        endpoints: Iterable[Endpoint],
    ) -> list[str]:
        """Queue `event` for `direct_url` (if any) and every endpoint that matches it; the ids of
        the deliveries. Publishing it again (after a crash) queues nothing new."""
        return await fan_out(
            self.deliveries,
            event,
            owner=owner,
            direct_url=direct_url,
            endpoints=endpoints,
            wording=self.config.slack_wording,
        )

    async def run(self) -> None:
        """Deliver until `stop()`, through a session of its own, closed when it returns."""
        if self._stopping:
            return
        policy = self.config.delivery
        session = open_session(
            self.config.url_policy,
            connect_timeout_s=policy.connect_timeout_s,
            max_connections=policy.max_in_flight,
            per_host=policy.per_host_connections,
        )
        async with session:
            self._dispatcher = Dispatcher(
                self.deliveries,
                session,
                targets=self._targets,
                policy=policy,
                url_policy=self.config.url_policy,
                circuits=self.circuits,
                dead_letters=self.dead_letters,
                metrics=self.metrics,
            )
            await self._dispatcher.run()

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, let attempts under way finish within `grace_s`, hand back the rest."""
        self._stopping = True
        if self._dispatcher is not None:
            await self._dispatcher.stop(grace_s)

    async def ping(self, endpoint: Endpoint) -> tuple[Event, AttemptResult]:
        """Send `endpoint` a signed `ping` now, as a delivery would be sent, and count it in the
        endpoint's health: the event sent and what the endpoint did."""
        event = Event(
            PING,
            "evt_ping_" + secrets.token_hex(12),
            {"endpoint_id": endpoint.id, "message": "a test event from pixhook"},
        )
        result = await self._send_now(endpoint, event)
        await observe_attempt(self.endpoints, endpoint.id, result, event.id, PING)
        return event, result

    async def _send_now(self, endpoint: Endpoint, event: Event) -> AttemptResult:
        body = body_for(event, endpoint.url, self.config.slack_wording, endpoint)
        target = endpoint_target(self.endpoints, endpoint)
        if isinstance(target, Refused):
            return target.result()
        if target.paced:
            # A Slack channel takes one message a second from everyone: the test waits its turn
            # like a delivery, so it is not answered 429 because deliveries are flowing.
            holder = f"pixhook:ping:{event.id}"
            away_s = await self._pacer.take_slot(target.url, holder, MAX_PACED_WAIT_S)
            if away_s:
                message = f"the channel's next free slot is {away_s:.0f} s away; try again later"
                return AttemptResult(False, 0.0, error_code=CHANNEL_BUSY, error_message=message)
        policy = self.config.delivery
        # A session of its own: a test send is rare, and the API process runs no dispatcher.
        session = open_session(
            self.config.url_policy,
            connect_timeout_s=policy.connect_timeout_s,
            max_connections=1,
            per_host=1,
        )
        async with session:
            result, _ = await attempt_once(
                session,
                target,
                event.id,
                body,
                url_policy=self.config.url_policy,
                deadline_s=policy.attempt_deadline_s,
                response_cap=policy.response_cap_bytes,
            )
        if target.paced:
            await self._pacer.answered(target.url, result)
        return result
