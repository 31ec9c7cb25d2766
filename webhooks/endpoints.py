"""Endpoints: URLs that subscribe to an owner's events, with their own secret, filters and headers.

All of an owner's endpoints live in one Redis hash (id -> JSON), so matching an event against
them is one read. Secrets and custom headers are sealed in that JSON (see `sealing.py`).
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import WatchError

from webhooks.keys import DEFAULT_PREFIX, Keys
from webhooks.sealing import Sealer
from webhooks.signing import generate_secret

EndpointKind = Literal["webhook", "slack"]
KINDS: tuple[EndpointKind, ...] = ("webhook", "slack")
ENDPOINT_DISABLED = "endpoint.disabled"
PING = "ping"


@dataclass(frozen=True)
class SealedSecret:
    sealed: str
    expires_at: float | None  # None: the current secret


@dataclass(frozen=True)
class Endpoint:
    id: str
    owner: str
    url: str
    kind: EndpointKind
    description: str = ""
    event_types: tuple[str, ...] = ("*",)
    job_types: tuple[str, ...] = ()
    metadata_filter: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    disabled_reason: str | None = None
    disabled_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    secrets: tuple[SealedSecret, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> sealed value
    templates: Mapping[str, Any] | None = None

    def matches(self, event_type: str, data: Mapping[str, Any]) -> bool:
        """Whether this endpoint wants the event: its type, then the job type and metadata the
        event's data carries (an event about neither, like `endpoint.disabled`, passes those)."""
        if not self.enabled or not any(
            fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types
        ):
            return False
        if self.job_types and "type" in data and data["type"] not in self.job_types:
            return False
        if self.metadata_filter and isinstance(data.get("metadata"), dict):
            metadata = data["metadata"]
            return all(metadata.get(k) == v for k, v in self.metadata_filter.items())
        return True


@dataclass(frozen=True)
class EndpointHealth:
    attempts: int
    succeeded: int
    failing_since: float | None
    last_success_at: float | None
    last_failure: dict[str, Any] | None
    # Recent attempts, oldest first: (ok, duration in ms, when).
    recent: list[tuple[bool, float, float]]

    @property
    def recent_success_rate(self) -> float | None:
        if not self.recent:
            return None
        return sum(ok for ok, _, _ in self.recent) / len(self.recent)


# KEYS: health, samples. ARGV: ok, duration_ms, now, failure_json, samples_kept
_OBSERVE = """
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'succeeded', 1)
  redis.call('HSET', KEYS[1], 'last_success_at', ARGV[3])
  redis.call('HDEL', KEYS[1], 'failing_since')
  return false
end
redis.call('HSET', KEYS[1], 'last_failure', ARGV[4])
redis.call('HSETNX', KEYS[1], 'failing_since', ARGV[3])
return redis.call('HGET', KEYS[1], 'failing_since')
"""


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(12)


class EndpointStore:
    def __init__(
        self,
        redis: Redis,
        sealer: Sealer,
        *,
        prefix: str = DEFAULT_PREFIX,
        samples_kept: int = 1000,
    ) -> None:
        self._redis = redis
        self.sealer = sealer
        self._keys = Keys(prefix)
        self._samples_kept = samples_kept
        self._observe = redis.register_script(_OBSERVE)

    def _key(self, owner: str) -> str:
        return self._keys.endpoints(owner)

    def _health_keys(self, endpoint_id: str) -> list[str]:
        return self._keys.endpoint_health(endpoint_id)

    async def count(self, owner: str) -> int:
        return int(await self._redis.hlen(self._key(owner)))  # type: ignore[misc]

    async def save(self, endpoint: Endpoint) -> None:
        await self._redis.hset(self._key(endpoint.owner), endpoint.id, _dump(endpoint))  # type: ignore[misc]

    async def get(self, owner: str, endpoint_id: str) -> Endpoint | None:
        raw = await self._redis.hget(self._key(owner), endpoint_id)  # type: ignore[misc]
        return None if raw is None else _load(owner, raw)

    async def owned_by(self, owner: str) -> list[Endpoint]:
        """Oldest first."""
        rows = await self._redis.hgetall(self._key(owner))  # type: ignore[misc]
        endpoints = [_load(owner, raw) for raw in rows.values()]
        return sorted(endpoints, key=lambda e: (e.created_at, e.id))

    async def delete(self, owner: str, endpoint_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key(owner), endpoint_id)
            pipe.delete(*self._health_keys(endpoint_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def update(
        self,
        owner: str,
        endpoint_id: str,
        change: Callable[[Endpoint], Endpoint | None],
    ) -> Endpoint | None:
        """Apply `change` to the stored endpoint atomically (retrying if another writer got there
        first); the endpoint as stored after, or None if there is none or `change` declined."""
        key = self._key(owner)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, endpoint_id)  # type: ignore[misc]
                    if raw is None:
                        return None
                    changed = change(_load(owner, raw))
                    if changed is None:
                        return None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, endpoint_id, _dump(changed))
                    await pipe.execute()
                    return changed
                except WatchError:
                    continue

    # Secrets: a new endpoint gets one; rotation keeps the old one signing for an overlap.

    def first_secret(self) -> tuple[str, tuple[SealedSecret, ...]]:
        secret = generate_secret()
        return secret, (SealedSecret(self.sealer.seal(secret), None),)

    async def rotate_secret(
        self, owner: str, endpoint_id: str, overlap_s: float
    ) -> tuple[Endpoint, str] | None:
        secret = generate_secret()

        def rotate(endpoint: Endpoint) -> Endpoint:
            now = time.time()
            kept = tuple(
                SealedSecret(s.sealed, s.expires_at or now + overlap_s)
                for s in endpoint.secrets
                if s.expires_at is None or s.expires_at > now
            )
            current = SealedSecret(self.sealer.seal(secret), None)
            return replace(endpoint, secrets=(current, *kept), updated_at=now)

        rotated = await self.update(owner, endpoint_id, rotate)
        return None if rotated is None else (rotated, secret)

    def signing_secrets(self, endpoint: Endpoint) -> list[str]:
        """The current secret first, then any still inside its rotation overlap."""
        now = time.time()
        return [
            self.sealer.open(s.sealed)
            for s in endpoint.secrets
            if s.expires_at is None or s.expires_at > now
        ]

    def header_values(self, endpoint: Endpoint) -> dict[str, str]:
        return {name: self.sealer.open(sealed) for name, sealed in endpoint.headers.items()}

    # Health: what each attempt did, for stats and for disabling an endpoint that keeps failing.

    async def observe(
        self, endpoint_id: str, ok: bool, duration_ms: float, failure: Mapping[str, Any] | None
    ) -> float | None:
        """Record one attempt; when the endpoint is failing, since when it has been."""
        failing_since = await self._observe(
            keys=self._health_keys(endpoint_id),
            args=[
                "1" if ok else "0",
                round(duration_ms, 2),
                repr(time.time()),
                json.dumps(failure or {}),
                self._samples_kept,
            ],
        )
        return None if failing_since is None else float(failing_since)

    async def health(self, endpoint_id: str, samples: int | None = None) -> EndpointHealth:
        """Its figures, with the last `samples` attempts (all that are kept when None)."""
        health_key, samples_key = self._health_keys(endpoint_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(health_key)
            pipe.lrange(samples_key, 0 if samples is None else -samples, -1)
            raw, rows = await pipe.execute()
        text = {k.decode(): v.decode() for k, v in raw.items()}
        recent = []
        for sample in rows:
            ok, duration_ms, at = sample.decode().split(" ")
            recent.append((ok == "1", float(duration_ms), float(at)))
        last_failure = text.get("last_failure")
        return EndpointHealth(
            attempts=int(text.get("attempts", 0)),
            succeeded=int(text.get("succeeded", 0)),
            failing_since=float(text["failing_since"]) if "failing_since" in text else None,
            last_success_at=float(text["last_success_at"]) if "last_success_at" in text else None,
            last_failure=json.loads(last_failure) if last_failure else None,
            recent=recent,
        )

    async def disable(self, owner: str, endpoint_id: str, reason: str) -> Endpoint | None:
        """Disable an enabled endpoint; None if it is gone or was already disabled, so exactly
        one caller announces it."""

        def disable(endpoint: Endpoint) -> Endpoint | None:
            if not endpoint.enabled:
                return None
            now = time.time()
            return replace(
                endpoint, enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now
            )

        return await self.update(owner, endpoint_id, disable)

    async def forget_failures(self, endpoint_id: str) -> None:
        """Re-enabled by hand: the failing streak that disabled it starts over, or the next
        failure would disable it again."""
        await self._redis.hdel(self._health_keys(endpoint_id)[0], "failing_since")  # type: ignore[misc]

    async def enable(self, owner: str, endpoint_id: str) -> Endpoint | None:
        """Enable it again (see `reenabled`); None if there is no such endpoint."""
        was_disabled = False

        def enable(endpoint: Endpoint) -> Endpoint:
            nonlocal was_disabled
            was_disabled = not endpoint.enabled
            return reenabled(endpoint) if was_disabled else endpoint

        enabled = await self.update(owner, endpoint_id, enable)
        if enabled is not None and was_disabled:
            await self.forget_failures(endpoint_id)
        return enabled


def reenabled(endpoint: Endpoint) -> Endpoint:
    """A disabled endpoint enabled again, without the reason it was disabled. Its failing
    streak is forgotten separately (`EndpointStore.forget_failures`), in its health."""
    return replace(
        endpoint, enabled=True, disabled_reason=None, disabled_at=None, updated_at=time.time()
    )


def _dump(endpoint: Endpoint) -> str:
    return json.dumps(
        {
            "id": endpoint.id,
            "url": endpoint.url,
            "kind": endpoint.kind,
            "description": endpoint.description,
            "event_types": list(endpoint.event_types),
            "job_types": list(endpoint.job_types),
            "metadata_filter": dict(endpoint.metadata_filter),
            "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason,
            "disabled_at": endpoint.disabled_at,
            "created_at": endpoint.created_at,
            "updated_at": endpoint.updated_at,
            "secrets": [{"sealed": s.sealed, "expires_at": s.expires_at} for s in endpoint.secrets],
            "headers": dict(endpoint.headers),
            "templates": endpoint.templates,
        },
        separators=(",", ":"),
    )


def _load(owner: str, raw: bytes | str) -> Endpoint:
    data = json.loads(raw)
    return Endpoint(
        id=data["id"],
        owner=owner,
        url=data["url"],
        kind=data["kind"],
        description=data["description"],
        event_types=tuple(data["event_types"]),
        job_types=tuple(data["job_types"]),
        metadata_filter=data["metadata_filter"],
        enabled=data["enabled"],
        disabled_reason=data["disabled_reason"],
        disabled_at=data["disabled_at"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        secrets=tuple(SealedSecret(s["sealed"], s["expires_at"]) for s in data["secrets"]),
        headers=data["headers"],
        templates=data["templates"],
    )
