"""Deliveries, their attempts and their indexes, kept in Redis.

A pending delivery sits in the `due` sorted set, scored by when it is next due. Claiming moves that
score forward by a lease, so a delivery whose worker dies is due again once the lease runs out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from redis.asyncio import Redis

from webhooks.keys import DEFAULT_PREFIX, Keys

DeliveryStatus = Literal["pending", "succeeded", "dead"]
Outcome = Literal["succeeded", "retry", "dead"]
STATUSES: tuple[DeliveryStatus, ...] = ("pending", "succeeded", "dead")
ATTEMPTS_KEPT = 100

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""

# KEYS: due, secrets version. ARGV: now_ms, lease_ms, limit, delivery key prefix, token
_CLAIM = """
local version = redis.call('GET', KEYS[2]) or '0'
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  if redis.call('HGET', key, 'status') == 'pending' then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
    redis.call('HSET', key, 'claim', ARGV[5])
    claimed[#claimed + 1] = redis.call('HGETALL', key)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return {version, claimed}
"""

# KEYS: delivery, attempts, due, pending, succeeded, dead, dlq, dlq:owner, dlq:host, dlq:owner:host,
#       dlq:redrivable
# ARGV: token, outcome, now_us, next_due_ms, attempt_json, attempts, last_error, last_status,
#       retention_s, id, attempts_kept, url, redrive_limit
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[11]), -1)
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return -1 end
local id, outcome, now_us = ARGV[10], ARGV[2], ARGV[3]
redis.call('HSET', KEYS[1], 'attempts', ARGV[6], 'last_error', ARGV[7], 'last_status_code', ARGV[8],
  'url', ARGV[12])
redis.call('HDEL', KEYS[1], 'claim')
if outcome == 'retry' then
  redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[4], id)
  return 0
end
redis.call('HSET', KEYS[1], 'status', outcome, 'next_attempt_at', '')
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
if outcome == 'succeeded' then
  redis.call('ZADD', KEYS[5], now_us, id)
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
  return redis.call('ZCARD', KEYS[11])
end
redis.call('HSET', KEYS[1], 'dead_at', now_us)
redis.call('ZADD', KEYS[6], now_us, id)
for i = 7, 10 do redis.call('ZADD', KEYS[i], now_us, id) end
if tonumber(redis.call('HGET', KEYS[1], 'redrives') or '0') < tonumber(ARGV[13]) then
  redis.call('ZADD', KEYS[11], now_us, id)
end
return 0
"""

# KEYS: as _RECORD's
# ARGV: id, due_ms, now_us, only_dead, redrive (1: auto-redrive, counted)
_REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or (ARGV[4] == '1' and status ~= 'dead') then return 0 end
local attempts = redis.call('HGET', KEYS[1], 'attempts')
redis.call('HSET', KEYS[1], 'status', 'pending', 'schedule_base', attempts,
  'next_attempt_at', ARGV[2], 'dead_at', '')
redis.call('HINCRBY', KEYS[1], 'replays', status == 'pending' and 0 or 1)
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[1], 'redrives', 1) end
redis.call('HDEL', KEYS[1], 'claim')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if status ~= 'pending' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1]) end
redis.call('ZREM', KEYS[5], ARGV[1])
for i = 6, 11 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""

# Same KEYS; removes a dead delivery entirely.
_PURGE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'dead' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
for i = 6, 11 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    event_type: str
    owner: str
    url: str
    payload: bytes
    created_at: float
    status: DeliveryStatus = "pending"
    attempts: int = 0
    schedule_base: int = 0
    replays: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    dead_at: float | None = None
    endpoint_id: str | None = None  # None: the per-job (or per-batch) webhook URL

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def authority(self) -> str:
        """host:port, the unit a circuit breaker watches: two ports are two services."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{self.host}:{port}"


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: float
    ok: bool
    duration_ms: float
    status_code: int | None
    error_code: str | None
    error_message: str | None
    response_excerpt: str
    # What was sent, as sent, but for the values of an endpoint's own (secret) headers.
    request_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    """Deliveries handed to one worker until `token`'s lease runs out, and the owners' secrets
    version as it stood when they were claimed (see `Keys.secrets_version`)."""

    token: str
    deliveries: list[Delivery]
    secrets_version: int


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def now_us() -> int:
    return time.time_ns() // 1000


def _lifecycle(keys: Keys, delivery: Delivery) -> list[str]:
    """The keys a delivery's status change touches, in the order the scripts expect."""
    return [
        keys.delivery(delivery.id),
        keys.attempts(delivery.id),
        keys.due,
        *(keys.by_status(delivery.owner, s) for s in STATUSES),
        keys.dlq,
        keys.dlq_owner(delivery.owner),
        keys.dlq_host(delivery.host),
        keys.dlq_owner(delivery.owner, delivery.host),
        keys.dlq_redrivable(delivery.authority),
    ]


class DeliveryStore:
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, retention_s: int = 7 * 86400):
        self.redis = redis
        self.keys = Keys(prefix)
        self.retention_s = retention_s
        self._create = redis.register_script(_CREATE)
        self._claim = redis.register_script(_CLAIM)
        self._record = redis.register_script(_RECORD)
        self._requeue = redis.register_script(_REQUEUE)
        self._purge = redis.register_script(_PURGE)

    async def create(self, delivery: Delivery) -> bool:
        """Store a new delivery, due now; False (and nothing written) when its id exists."""
        fields: list[str | bytes] = []
        for name, value in _to_hash(delivery).items():
            fields += [name, value]
        keys = [self.keys.delivery(delivery.id), self.keys.due]
        keys.append(self.keys.by_status(delivery.owner, "pending"))
        due_ms = int(delivery.created_at * 1000)
        created = await self._create(keys=keys, args=[delivery.id, due_ms, *fields])
        return bool(created)

    async def get(self, delivery_id: str) -> Delivery | None:
        # `dlv_X:attempts` would name the delivery's attempt list: an id is one key segment.
        if ":" in delivery_id:
            return None
        raw = await self.redis.hgetall(self.keys.delivery(delivery_id))  # type: ignore[misc]
        return from_hash(raw) if raw else None

    async def get_many(self, delivery_ids: Sequence[str]) -> list[Delivery | None]:
        """Several deliveries in one round trip; None where one is gone."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hgetall(self.keys.delivery(delivery_id))
            rows = await pipe.execute()
        return [from_hash(raw) if raw else None for raw in rows]

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        key = self.keys.attempts(delivery_id)
        rows = await self.redis.lrange(key, 0, -1)  # type: ignore[misc]
        return [Attempt(**_known(json.loads(row))) for row in rows]

    async def claim(self, token: str, lease_s: float, limit: int) -> Claimed:
        """Up to `limit` due deliveries, leased to `token` for `lease_s`."""
        version, rows = await self._claim(
            keys=[self.keys.due, self.keys.secrets_version],
            args=[
                int(time.time() * 1000),
                int(lease_s * 1000),
                limit,
                self.keys.delivery(""),
                token,
            ],
        )
        deliveries = [from_hash(dict(zip(row[::2], row[1::2], strict=True))) for row in rows]
        return Claimed(token, deliveries, int(version))

    async def defer(self, delivery_ids: Sequence[str], due_at: float) -> None:
        """Push leased deliveries back without spending an attempt (an open circuit, a shutdown)."""
        if delivery_ids:
            due_ms = int(due_at * 1000)
            await self.redis.zadd(self.keys.due, {i: due_ms for i in delivery_ids}, xx=True)

    async def record(
        self,
        delivery: Delivery,
        token: str,
        attempt: Attempt,
        outcome: Outcome,
        next_attempt_at: float | None = None,
        *,
        redrive_limit: int = 0,
    ) -> int | None:
        """Log the attempt and move the delivery on, unless its lease passed to another worker.
        `delivery.url` is where the attempt went (an endpoint's URL may have changed since). A
        delivery that dies auto-redriven fewer than `redrive_limit` times is left to auto-redrive.

        Returns None for a lost lease; on success, how many dead deliveries of its host and port
        auto-redrive may re-send.
        """
        args: list[str | int] = [
            token,
            outcome,
            now_us(),
            "" if next_attempt_at is None else int(next_attempt_at * 1000),
            json.dumps(asdict(attempt)),
            attempt.number,
            attempt.error_code or "",
            "" if attempt.status_code is None else attempt.status_code,
            self.retention_s,
            delivery.id,
            ATTEMPTS_KEPT,
            delivery.url,
            redrive_limit,
        ]
        result = await self._record(keys=_lifecycle(self.keys, delivery), args=args)
        return None if result == -1 else int(result)

    async def requeue(
        self, delivery: Delivery, due_at: float, *, only_dead: bool, redrive: bool = False
    ) -> bool:
        """Due again at `due_at` with a fresh retry schedule and the same event id; `redrive`
        counts it as one of the delivery's auto-redrives."""
        args: list[str | int] = [
            delivery.id,
            int(due_at * 1000),
            now_us(),
            "1" if only_dead else "0",
            "1" if redrive else "0",
        ]
        return bool(await self._requeue(keys=_lifecycle(self.keys, delivery), args=args))

    async def purge(self, delivery: Delivery) -> bool:
        """Delete a dead delivery and its attempts; False when it is not dead."""
        return bool(await self._purge(keys=_lifecycle(self.keys, delivery), args=[delivery.id]))

    async def page(
        self, key: str, *, limit: int, before: int | None = None, low: int | None = None
    ) -> list[tuple[Delivery, int]]:
        """Newest first from an index scored in microseconds: (delivery, score) pairs with
        `low <= score < before`."""
        high = "+inf" if before is None else f"({before}"
        rows = await self.redis.zrevrangebyscore(
            key, high, "-inf" if low is None else low, start=0, num=limit, withscores=True
        )
        deliveries = await self.get_many([raw_id.decode() for raw_id, _ in rows])
        found, gone = [], []
        for (raw_id, score), delivery in zip(rows, deliveries, strict=True):
            if delivery is None:
                gone.append(raw_id)  # a succeeded delivery that expired
            else:
                found.append((delivery, int(score)))
        if gone:
            await self.redis.zrem(key, *gone)
        return found

    async def due_count(self) -> tuple[int, int]:
        """(deliveries due now, deliveries pending in all)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(self.keys.due, "-inf", int(time.time() * 1000))
            pipe.zcard(self.keys.due)
            due, pending = await pipe.execute()
        return int(due), int(pending)


def _known(attempt: dict[str, Any]) -> dict[str, Any]:
    # A newer release may have recorded more: an older one reading it must not fail.
    return {k: v for k, v in attempt.items() if k in Attempt.__dataclass_fields__}


def _to_hash(delivery: Delivery) -> dict[str, str | bytes]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "owner": delivery.owner,
        "url": delivery.url,
        "payload": delivery.payload,
        "created_at": repr(delivery.created_at),
        "status": delivery.status,
        "attempts": str(delivery.attempts),
        "schedule_base": "0",
        "replays": "0",
        "next_attempt_at": "",
        "last_error": "",
        "last_status_code": "",
        "dead_at": "",
        "endpoint_id": delivery.endpoint_id or "",
    }


def from_hash(raw: dict[bytes, bytes]) -> Delivery:
    text = {k.decode(): v for k, v in raw.items()}

    def optional(name: str, scale: float = 1.0) -> float | None:
        value = text.get(name, b"").decode()
        return float(value) / scale if value else None

    status: Any = text["status"].decode()
    last_status = optional("last_status_code")
    return Delivery(
        id=text["id"].decode(),
        event_id=text["event_id"].decode(),
        event_type=text["event_type"].decode(),
        owner=text["owner"].decode(),
        url=text["url"].decode(),
        payload=text["payload"],
        created_at=float(text["created_at"]),
        status=status,
        attempts=int(text["attempts"]),
        schedule_base=int(text.get("schedule_base", b"0")),
        replays=int(text.get("replays", b"0")),
        next_attempt_at=optional("next_attempt_at", 1000),
        last_error=text.get("last_error", b"").decode() or None,
        last_status_code=None if last_status is None else int(last_status),
        dead_at=optional("dead_at", 1_000_000),
        endpoint_id=text.get("endpoint_id", b"").decode() or None,
    )
