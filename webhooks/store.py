"""Deliveries and their attempts, kept in Redis hashes and lists."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from webhooks.sender import AttemptResult

DeliveryStatus = Literal["pending", "succeeded", "dead"]

_CREATE_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
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
    next_attempt_at: float | None = None
    last_error: str | None = None

    def summary(self) -> dict[str, Any]:
        """What callers see of a delivery: everything but the payload."""
        data = asdict(self)
        del data["payload"]
        return data


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: float
    ok: bool
    duration_ms: float
    status_code: int | None
    error_code: str | None
    error_message: str | None
    response_excerpt: str = field(repr=False)


class DeliveryStore:
    def __init__(self, redis: Redis, *, prefix: str = "pixhook", retention_s: int = 7 * 86400):
        self._redis = redis
        self._prefix = prefix
        self._retention_s = retention_s
        self._create = redis.register_script(_CREATE_IF_ABSENT)

    def _key(self, delivery_id: str) -> str:
        return f"{self._prefix}:delivery:{delivery_id}"

    async def create(self, delivery: Delivery) -> bool:
        """Store a new delivery; False (and nothing written) when its id exists already."""
        fields: list[str | bytes] = []
        for name, value in _to_hash(delivery).items():
            fields += [name, value]
        created = await self._create(keys=[self._key(delivery.id)], args=fields)
        return bool(created)

    async def get(self, delivery_id: str) -> Delivery | None:
        raw = await self._redis.hgetall(self._key(delivery_id))  # type: ignore[misc]
        return _from_hash(raw) if raw else None

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._redis.lrange(self._key(delivery_id) + ":attempts", 0, -1)  # type: ignore[misc]
        return [Attempt(**json.loads(row)) for row in rows]

    async def record_attempt(
        self,
        delivery_id: str,
        number: int,
        started_at: float,
        result: AttemptResult,
        *,
        status: DeliveryStatus,
        next_attempt_at: float | None,
    ) -> None:
        """Append the attempt and move the delivery on, in one transaction."""
        attempt = Attempt(
            number=number,
            started_at=started_at,
            ok=result.ok,
            duration_ms=round(result.duration_ms, 2),
            status_code=result.status_code,
            error_code=result.error_code,
            error_message=result.error_message,
            response_excerpt=result.response_excerpt,
        )
        key = self._key(delivery_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key + ":attempts", json.dumps(asdict(attempt)))
            pipe.hset(
                key,
                mapping={
                    "status": status,
                    "attempts": number,
                    "next_attempt_at": "" if next_attempt_at is None else repr(next_attempt_at),
                    "last_error": result.error_code or "",
                },
            )
            if status == "succeeded":
                pipe.expire(key, self._retention_s)
                pipe.expire(key + ":attempts", self._retention_s)
            await pipe.execute()


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
        "next_attempt_at": ""
        if delivery.next_attempt_at is None
        else repr(delivery.next_attempt_at),
        "last_error": delivery.last_error or "",
    }


def _from_hash(raw: dict[bytes, bytes]) -> Delivery:
    text = {k.decode(): v for k, v in raw.items()}
    next_at = text["next_attempt_at"].decode()
    status: Any = text["status"].decode()
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
        next_attempt_at=float(next_at) if next_at else None,
        last_error=text["last_error"].decode() or None,
    )
