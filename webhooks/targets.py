"""Where a delivery goes and how: the owner's secret for a per-job URL, or the endpoint's own
secret, headers and pacing; and, after the attempt, what it says about the endpoint's health."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from webhooks.endpoints import ENDPOINT_DISABLED, Endpoint, EndpointStore
from webhooks.errors import SealBroken
from webhooks.events import utc_timestamp
from webhooks.fanout import Event, fan_out
from webhooks.pacing import Pacer
from webhooks.sender import GONE, AttemptResult
from webhooks.signing import webhook_headers
from webhooks.slack import SlackWording, is_slack_url
from webhooks.store import Delivery, DeliveryStore, host_of

log = logging.getLogger("pixhook.endpoints")

SecretsFor = Callable[[str], Awaitable[Sequence[str]]]
"""Given a delivery's owner, the secrets to sign with (the current one first). Whoever changes
them bumps `Keys.secrets_version` in the same transaction, or workers may sign with stale ones."""

# What the attempt log shows for the value of an endpoint's own header.
HIDDEN_VALUE = "(hidden)"
# Reasons an endpoint delivery is not sent at all; no later attempt would do better.
ENDPOINT_GONE = "ENDPOINT_GONE"
ENDPOINT_DISABLED_CODE = "ENDPOINT_DISABLED"
SEALED_SECRET_BROKEN = "SEALED_SECRET_BROKEN"


@dataclass(frozen=True)
class Target:
    url: str
    secrets: Sequence[str]
    headers: Mapping[str, str] = field(default_factory=dict)
    endpoint: Endpoint | None = None

    def signed_headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        """The endpoint's own headers and this attempt's signature headers, which always win.
        Raises `InvalidSecret` for a secret that cannot sign."""
        return {**self.headers, **webhook_headers(self.secrets, msg_id, int(time.time()), body)}

    def logged(self, sent: Mapping[str, str]) -> dict[str, str]:
        """`sent` as the attempt log keeps it: an endpoint's headers may be credentials (a CMS
        bearer token), so they are kept by name only."""
        return {name: HIDDEN_VALUE if name in self.headers else v for name, v in sent.items()}

    @property
    def paced(self) -> bool:
        """Slack takes one message a second per channel, whoever posts it."""
        if self.endpoint is not None:
            return self.endpoint.kind == "slack"
        return is_slack_url(self.url)


@dataclass(frozen=True)
class Refused:
    error_code: str
    message: str

    def result(self) -> AttemptResult:
        """The attempt that was never made, as the attempt log records it."""
        return AttemptResult(False, 0.0, error_code=self.error_code, error_message=self.message)


class Targets:
    def __init__(
        self,
        owner_secrets: SecretsFor,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        pacer: Pacer,
        wording: SlackWording,
        *,
        disable_after_s: float,
        secrets_cache_s: float = 5.0,
    ) -> None:
        self._owner_secrets = owner_secrets
        self._wording = wording
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._pacer = pacer
        self._disable_after_s = disable_after_s
        self._secrets_cache_s = secrets_cache_s
        self._secrets_version = 0
        # owner -> (the secrets version it was read under, when it goes stale, the secrets)
        self._cached: dict[str, tuple[int, float, Sequence[str]]] = {}

    def saw_secrets_version(self, version: int) -> None:
        """The owners' secrets version read with the latest claim: secrets kept from before it
        changed are read again, so a rotated secret signs the very next delivery."""
        self._secrets_version = version

    async def resolve(self, delivery: Delivery) -> Target | Refused:
        if delivery.endpoint_id is None:
            return Target(delivery.url, await self._secrets_of(delivery.owner))
        # Read on every attempt, never cached: a re-enabled endpoint is live for the very next
        # replay, and a rotated secret or changed URL takes effect at once.
        endpoint = await self._endpoints.get(delivery.owner, delivery.endpoint_id)
        if endpoint is None:
            return Refused(ENDPOINT_GONE, f"endpoint {delivery.endpoint_id} was deleted")
        if not endpoint.enabled:
            return Refused(
                ENDPOINT_DISABLED_CODE,
                f"endpoint {endpoint.id} is disabled: {endpoint.disabled_reason or 'by its owner'}",
            )
        return endpoint_target(self._endpoints, endpoint)

    async def wait_s(self, delivery: Delivery, target: Target) -> float:
        """How long a paced channel makes this delivery wait; 0: send now."""
        if not target.paced:
            return 0.0
        return await self._pacer.wait_s(target.url, self._deliveries.keys.delivery(delivery.id))

    async def settle(self, delivery: Delivery, target: Target, result: AttemptResult) -> None:
        """Account for an attempt at an endpoint; disable it once it has failed for too long,
        or at once when it answered 410 Gone."""
        endpoint = target.endpoint
        if endpoint is None:
            return
        if target.paced:
            await self._pacer.answered(target.url, result)
        failing_since = await observe_attempt(
            self._endpoints, endpoint.id, result, delivery.id, delivery.event_type
        )
        if failing_since is None:
            return
        reason = self._disable_reason(result, failing_since)
        if reason is None:
            return
        disabled = await self._endpoints.disable(endpoint.owner, endpoint.id, reason)
        if disabled is not None:
            await self._announce_disabled(disabled, failing_since)

    def _disable_reason(self, result: AttemptResult, failing_since: float) -> str | None:
        """Why a failing endpoint is disabled now; None: it is not, yet."""
        if result.error_code == GONE:
            # Standard Webhooks and Svix read 410 as the receiver unsubscribing.
            return "it answered 410 Gone, which unsubscribes an endpoint"
        failing_for = time.time() - failing_since
        if failing_for < self._disable_after_s:
            return None
        last = result.error_message or result.error_code
        return f"every attempt for {_span(failing_for)} failed (the last: {last})"

    async def _announce_disabled(self, endpoint: Endpoint, failing_since: float) -> None:
        log.warning(
            "endpoint %s (%s) disabled: %s",
            endpoint.id,
            host_of(endpoint.url),
            endpoint.disabled_reason,
            extra={"client_id": endpoint.owner},
        )
        disabled_at = endpoint.disabled_at or time.time()
        data: dict[str, Any] = {
            "id": endpoint.id,
            "object": "endpoint",
            # The host only: some endpoint URLs are secrets themselves (Slack's, say).
            "host": host_of(endpoint.url),
            "description": endpoint.description,
            "reason": endpoint.disabled_reason,
            "failing_since": _iso(failing_since),
            "disabled_at": _iso(disabled_at),
        }
        event = Event(ENDPOINT_DISABLED, f"evt_{endpoint.id}_off_{int(disabled_at * 1000)}", data)
        others = [e for e in await self._endpoints.owned_by(endpoint.owner) if e.id != endpoint.id]
        await fan_out(
            self._deliveries,
            event,
            owner=endpoint.owner,
            direct_url=None,
            endpoints=others,
            wording=self._wording,
        )

    async def _secrets_of(self, owner: str) -> Sequence[str]:
        # Cached briefly: one Redis read per owner every few seconds instead of one per attempt.
        # The expiry only drops a rotated-out secret whose overlap ended; a rotation itself
        # changes the version and is seen at once.
        version = self._secrets_version
        cached = self._cached.get(owner)
        if cached is not None and cached[0] == version and cached[1] > time.monotonic():
            return cached[2]
        found = await self._owner_secrets(owner)
        self._cached[owner] = (version, time.monotonic() + self._secrets_cache_s, found)
        return found


def endpoint_target(endpoints: EndpointStore, endpoint: Endpoint) -> Target | Refused:
    """Where and how to send to `endpoint`: its URL, with its secrets and headers unsealed."""
    try:
        secrets = endpoints.signing_secrets(endpoint)
        headers = endpoints.header_values(endpoint)
    except SealBroken as exc:
        return Refused(SEALED_SECRET_BROKEN, f"endpoint {endpoint.id}: {exc}")
    return Target(endpoint.url, secrets, headers, endpoint)


async def observe_attempt(
    endpoints: EndpointStore,
    endpoint_id: str,
    result: AttemptResult,
    delivery_id: str,
    event_type: str,
) -> float | None:
    """Count an attempt in the endpoint's health; when it is failing, since when."""
    failure = None
    if not result.ok:
        failure = {
            "at": time.time(),
            "delivery_id": delivery_id,
            "event_type": event_type,
            "status_code": result.status_code,
            "error_code": result.error_code,
            "error_message": result.error_message,
        }
    return await endpoints.observe(endpoint_id, result.ok, result.duration_ms, failure)


def _iso(moment: float) -> str:
    return utc_timestamp(datetime.fromtimestamp(moment, UTC))


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
