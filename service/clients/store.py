"""API clients: who may call, with which key, and which secret signs their webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from redis.asyncio import Redis
from redis.exceptions import WatchError

from service.ids import new_id
from service.keys import PREFIX, Keys
from service.records import known_fields
from webhooks import Keys as DeliveryKeys
from webhooks import generate_secret

API_KEY_PREFIX = "phk_"


@dataclass(frozen=True)
class ClientLimits:
    """A client's own limits; a field left None takes the service's default from Settings."""

    requests_per_s: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None  # jobs queued or running at once

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> ClientLimits:
        return cls(**known_fields(cls, json.loads(raw))) if raw else cls()


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    created_at: float
    limits: ClientLimits = ClientLimits()
    revoked_at: float | None = None  # a revoked client's keys no longer authenticate


class ClientRevoked(Exception):
    """The client is revoked: its API key cannot be rotated back to life."""


@dataclass(frozen=True)
class NewClient:
    """A client just made: the only time its API key is known in full."""

    client: Client
    api_key: str
    webhook_secret: str


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class ClientStore:
    def __init__(
        self, redis: Redis, prefix: str = PREFIX, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        self._delivery_keys = DeliveryKeys(prefix)
        # Unix seconds now: when rotation overlaps end. Tests pass their own to skip ahead.
        self._clock = clock

    def _client_key(self, client_id: str) -> str:
        return self._keys.client(client_id)

    def _api_key_key(self, digest: str) -> str:
        return self._keys.api_key(digest)

    async def create(self, name: str, limits: ClientLimits | None = None) -> NewClient:
        """A client with a fresh API key (stored only as its SHA-256) and webhook secret."""
        client = Client(new_id("cli"), name, self._clock(), limits or ClientLimits())
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        webhook_secret = generate_secret()
        digest = key_digest(api_key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._client_key(client.id),
                mapping={
                    "id": client.id,
                    "name": name,
                    "created_at": repr(client.created_at),
                    "key_digest": digest,
                    "previous_keys": "[]",
                    "secrets": json.dumps([{"secret": webhook_secret, "expires_at": None}]),
                    "limits": client.limits.to_json(),
                },
            )
            pipe.set(self._api_key_key(digest), client.id)
            pipe.sadd(self._keys.clients, client.id)
            await pipe.execute()
        return NewClient(client, api_key, webhook_secret)

    async def authenticate(self, api_key: str) -> Client | None:
        """The active client this key belongs to: its current key, or a rotated one still
        inside its overlap. None for unknown keys and revoked clients."""
        digest = key_digest(api_key)
        client_id = await self._redis.get(self._api_key_key(digest))
        if client_id is None:
            return None
        raw = await self._redis.hgetall(self._client_key(client_id.decode()))  # type: ignore[misc]
        accepted = _working_keys(raw, self._clock())
        # The index lookup is by digest; the record's own digests decide, compared in
        # constant time, so a stale or tampered index entry never lets a key in.
        if not any([hmac.compare_digest(known, digest) for known in accepted]):
            return None
        return _client(raw)

    async def working_key_digests(self, client_id: str) -> list[str]:
        """Digests of the keys that authenticate the client now; none once it is revoked."""
        raw = await self._redis.hgetall(self._client_key(client_id))  # type: ignore[misc]
        return _working_keys(raw, self._clock())

    async def get(self, client_id: str) -> Client | None:
        raw = await self._redis.hgetall(self._client_key(client_id))  # type: ignore[misc]
        return _client(raw) if raw else None

    async def list_clients(self) -> list[Client]:
        ids = await self._redis.smembers(self._keys.clients)  # type: ignore[misc]
        clients = []
        for client_id in sorted(ids):
            raw = await self._redis.hgetall(self._client_key(client_id.decode()))  # type: ignore[misc]
            if raw:
                clients.append(_client(raw))
        return clients

    async def signing_secrets(self, client_id: str) -> list[str]:
        """The secrets that sign this client's webhooks: the current one first, then any
        previous one still inside its rotation overlap."""
        raw = await self._redis.hget(self._client_key(client_id), "secrets")  # type: ignore[misc]
        now = self._clock()
        return [
            entry["secret"]
            for entry in (json.loads(raw) if raw else [])
            if entry["expires_at"] is None or entry["expires_at"] > now
        ]

    async def rotate_secret(self, client_id: str, overlap_s: float) -> str | None:
        """A new current secret, signing every delivery sent once this returns; the old one
        keeps signing beside it for `overlap_s`. None: no client."""
        key = self._client_key(client_id)
        new_secret = generate_secret()
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, "secrets")  # type: ignore[misc]
                    if raw is None:
                        return None
                    now = self._clock()
                    kept = [
                        {"secret": e["secret"], "expires_at": e["expires_at"] or now + overlap_s}
                        for e in json.loads(raw)
                        if e["expires_at"] is None or e["expires_at"] > now
                    ]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    secrets_json = json.dumps([{"secret": new_secret, "expires_at": None}, *kept])
                    pipe.hset(key, "secrets", secrets_json)
                    # Workers drop the secrets they keep in memory when they see this change.
                    pipe.incr(self._delivery_keys.secrets_version)
                    await pipe.execute()
                    return new_secret
                except WatchError:
                    continue

    async def rotate_key(self, client_id: str, overlap_s: float = 0) -> str | None:
        """A new API key; the old one stops at once, or after `overlap_s`. None: no client.

        Raises `ClientRevoked` for a revoked client."""
        key = self._client_key(client_id)
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hgetall(key)  # type: ignore[misc]
                    if not raw:
                        return None
                    if b"revoked_at" in raw:
                        raise ClientRevoked(f"client {client_id} is revoked")
                    now, old_digest = self._clock(), raw[b"key_digest"].decode()
                    previous = [
                        {"digest": d, "expires_at": e} for d, e in _live_keys(raw, now).items()
                    ]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if overlap_s > 0:
                        previous.append({"digest": old_digest, "expires_at": now + overlap_s})
                        pipe.pexpire(self._api_key_key(old_digest), int(overlap_s * 1000))
                    else:
                        pipe.delete(self._api_key_key(old_digest))
                    pipe.set(self._api_key_key(key_digest(api_key)), client_id)
                    pipe.hset(
                        key,
                        mapping={
                            "key_digest": key_digest(api_key),
                            "previous_keys": json.dumps(previous),
                        },
                    )
                    await pipe.execute()
                    return api_key
                except WatchError:
                    continue

    async def revoke(self, client_id: str) -> Client | None:
        """Every key of the client stops working at once; its secrets stay, so deliveries
        already queued are still signed and sent. None: no client. Revoking twice is harmless."""
        key = self._client_key(client_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hgetall(key)  # type: ignore[misc]
                    if not raw:
                        return None
                    if b"revoked_at" in raw:
                        return _client(raw)
                    revoked_at = repr(self._clock())
                    digests = [raw[b"key_digest"].decode(), *_live_keys(raw, 0)]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping={"revoked_at": revoked_at, "previous_keys": "[]"})
                    pipe.delete(*(self._api_key_key(d) for d in digests))
                    await pipe.execute()
                    return _client({**raw, b"revoked_at": revoked_at.encode()})
                except WatchError:
                    continue


def _working_keys(raw: dict[bytes, bytes], now: float) -> list[str]:
    if not raw or b"revoked_at" in raw:
        return []
    return [raw[b"key_digest"].decode(), *_live_keys(raw, now)]


def _live_keys(raw: dict[bytes, bytes], now: float) -> dict[str, float]:
    """Rotated-out key digests still inside their overlap, with when each stops."""
    previous = json.loads(raw.get(b"previous_keys") or b"[]")
    return {e["digest"]: e["expires_at"] for e in previous if e["expires_at"] > now}


def _client(raw: dict[bytes, bytes]) -> Client:
    revoked_at = raw.get(b"revoked_at")
    return Client(
        raw[b"id"].decode(),
        raw[b"name"].decode(),
        float(raw[b"created_at"]),
        ClientLimits.from_json(raw.get(b"limits")),
        None if revoked_at is None else float(revoked_at),
    )


@asynccontextmanager
async def client_store(redis_url: str) -> AsyncIterator[ClientStore]:
    """A store on its own connection, for the CLI and the dev stack."""
    redis = Redis.from_url(redis_url)
    try:
        yield ClientStore(redis)
    finally:
        await redis.aclose()
