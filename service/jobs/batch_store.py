"""Batch records in Redis: counters, the items waiting to run, and the results not yet stored.

Keys of one batch (`{p}` = `pixhook:batch:<id>`):

- `{p}` hash: the record and its counters.
- `{p}:items` list: one entry per item, `<index>:<job body JSON>`, or `<index>:!` for an item
  refused at intake. The position in the list is the item's index.
- `{p}:inflight` set: indexes of items claimed and not yet finished (at most `concurrency`).
- `{p}:done` bitmap: a bit per finished item, so each item's result is written once even when
  its job runs twice (a worker died) or its end is reported twice.
- `{p}:results` list: result lines waiting to be written to storage as the next part.
- `{p}:staged`, `{p}:staged-refused` lists: items (and the errors of those refused) read so
  far while the batch's file arrives. Each append renews their short TTL, so a reader that
  dies leaves nothing behind for long; `commit` renames them to `items` and `refused` at once,
  so no batch ever runs on half of its file.
- `{p}:refused` list: `<index>:<error JSON>` of items refused at intake, recorded (and trimmed)
  once the batch runs.
- `{p}:reader` string: the worker reading the batch's `items_url`, while it lives.
- `{p}:failed`, `{p}:canceled` bitmaps: a bit per item whose (latest) outcome is that; an item
  done and in neither succeeded. With `done`, they page the items by status.
- `{p}:errors` hash: index -> the error of each failed item, `{code, message, field?, job,
  bucket}` (`job`: it has a job to run again; `bucket`: its latency's, to take back on a retry).
- `{p}:codes` hash: error code -> failed items with it.
- `{p}:latency` hash: latency bucket (`LATENCY_RATIO` steps) -> items that ended in it.
- `{p}:retry` list: indexes of failed items asked to run again, and of items put back when
  their provider's keys were all refused; claimed before new items.
- `{p}:rerun` set: those claimed whose job is not yet queued again: until it is, the job's end
  is the attempt before, which `reconcile` must not record again.

A client's batches are listed, newest first, from `pixhook:batches:index:<client>`.

Every change that must not half-happen is one Lua script.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from service.ids import is_id
from service.jobs.batch_outcomes import BatchOutcomes, latency_bucket
from service.jobs.batch_pauses import BatchPauses
from service.jobs.index import IndexCursor, newest
from service.jobs.usage_totals import COST_UNITS_PER_USD, TOKEN_KINDS, cost_units
from service.keys import PREFIX, Keys

# `receiving`: its items are still being read (from `items_url`); `failed`: they could not be;
# `paused`: no item starts until it is resumed (its budget was reached, or its provider's keys
# were all refused: service/jobs/batch_pauses.py).
BatchStatus = Literal["receiving", "running", "paused", "completed", "canceled", "failed"]
PausedReason = Literal["budget", "keys"]
Outcome = Literal["succeeded", "failed", "canceled"]
_OUTCOME_PARTS = ("failed", "canceled", "errors", "codes", "latency", "retry", "rerun")
_MESSAGE_CHARS = 300
REFUSED = "!"  # the body of an item refused at intake
STAGING_TTL_S = 600.0  # staged items outlive a stalled upload or a dead reader this long

# KEYS: hash, staged, items, staged-refused, refused, running, client running, receiving.
# ARGV: retention ms, batch id, total, hash field/value pairs. 0: not all staged (some expired
# during a stalled upload, and later ones began a new list), or no longer receiving.
_COMMIT = """
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'receiving' then return 0 end
redis.call('RENAME', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[2])
redis.call('SADD', KEYS[7], ARGV[2])
redis.call('SREM', KEYS[8], ARGV[2])
return 1
"""

# KEYS: hash, staged, staged-refused, receiving, reader. ARGV: status, error JSON, now, batch id.
_END_RECEIVING = """
if redis.call('HGET', KEYS[1], 'status') ~= 'receiving' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error', ARGV[2], 'finished_at', ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
redis.call('SREM', KEYS[4], ARGV[4])
return 1
"""
RETRY = "@"  # the body of a claimed item that runs its existing job again

# KEYS: hash, items, inflight, retry, rerun, other inflight sets of the client's running batches...
# ARGV: how many at most, the client's cap, now. Returns whether this claim started the batch,
# then the claimed item entries (items to run again first, as `<index>:@`).
_CLAIM = """
local h = redis.call('HMGET', KEYS[1], 'status', 'cancel', 'next', 'total', 'concurrency')
if h[1] ~= 'running' or h[2] == '1' then return {0} end
local nxt, total, concurrency = tonumber(h[3]), tonumber(h[4]), tonumber(h[5])
local used = 0
for k = 6, #KEYS do used = used + redis.call('SCARD', KEYS[k]) end
used = used + redis.call('SCARD', KEYS[3])
local room = math.min(concurrency - redis.call('SCARD', KEYS[3]), tonumber(ARGV[1]),
                      tonumber(ARGV[2]) - used)
local claimed = {0}
while room > 0 do
  local index = redis.call('LPOP', KEYS[4])
  if not index then break end
  redis.call('SADD', KEYS[3], index)
  redis.call('SADD', KEYS[5], index)
  claimed[#claimed + 1] = index .. ':@'
  room = room - 1
end
while room > 0 and nxt < total do
  local entry = redis.call('LINDEX', KEYS[2], nxt)
  local index, body = string.match(entry, '^(%d+):(.*)$')
  if body ~= '!' then
    redis.call('SADD', KEYS[3], index)
    claimed[#claimed + 1] = entry
    room = room - 1
  end
  nxt = nxt + 1
end
redis.call('HSET', KEYS[1], 'next', nxt)
if #claimed > 1 then claimed[1] = redis.call('HSETNX', KEYS[1], 'started_at', ARGV[3]) end
return claimed
"""

# KEYS: hash, done, inflight, results, failed, canceled, errors, codes, latency, retry
# ARGV: index, outcome, line, error entry JSON or '', now, progress interval (s), progress step,
#       error code or '', latency bucket or '', input, output and cached input tokens, cost
#       (COST_UNITS_PER_USD), 1 if its model has no price
# Returns {recorded, progress due, last item, bytes waiting, paused for its budget}.
_RECORD = """
if redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 1 then return {0, 0, 0, 0, 0} end
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if ARGV[2] == 'failed' then
  redis.call('SETBIT', KEYS[5], ARGV[1], 1)
  redis.call('HSET', KEYS[7], ARGV[1], ARGV[4])
  if ARGV[8] ~= '' then redis.call('HINCRBY', KEYS[8], ARGV[8], 1) end
elseif ARGV[2] == 'canceled' then
  redis.call('SETBIT', KEYS[6], ARGV[1], 1)
end
if ARGV[9] ~= '' then redis.call('HINCRBY', KEYS[9], ARGV[9], 1) end
for k, name in ipairs({'input_tokens', 'output_tokens', 'cached_input_tokens', 'cost',
                       'unpriced_items'}) do
  if ARGV[9 + k] ~= '0' then redis.call('HINCRBY', KEYS[1], name, ARGV[9 + k]) end
end
-- The budget reached with items still to start: none start until the batch is resumed.
local paused = 0
local b = redis.call('HMGET', KEYS[1], 'max_cost', 'cost', 'status', 'cancel', 'next', 'total')
if b[1] and ARGV[13] ~= '0' and tonumber(b[2] or 0) >= tonumber(b[1]) and b[3] == 'running'
   and b[4] ~= '1'
   and (tonumber(b[5]) < tonumber(b[6]) or redis.call('LLEN', KEYS[10]) > 0) then
  redis.call('HSET', KEYS[1], 'status', 'paused', 'paused_reason', 'budget', 'paused_at', ARGV[5])
  redis.call('HDEL', KEYS[1], 'paused_provider')
  paused = 1
end
-- After a retry the results file is written again from the records as the batch ends.
local waiting = 0
if redis.call('HGET', KEYS[1], 'rewrite') ~= '1' then
  redis.call('RPUSH', KEYS[4], ARGV[3])
  waiting = redis.call('HINCRBY', KEYS[1], 'waiting_bytes', #ARGV[3] + 1)
end
local h = redis.call('HMGET', KEYS[1], 'succeeded', 'failed', 'canceled', 'total',
                     'progress_at', 'progress_done', 'closing')
local done = tonumber(h[1] or 0) + tonumber(h[2] or 0) + tonumber(h[3] or 0)
local total, now = tonumber(h[4]), tonumber(ARGV[5])
local progress = 0
if done < total and (now - tonumber(h[5] or 0) >= tonumber(ARGV[6])
                     or done - tonumber(h[6] or 0) >= tonumber(ARGV[7])) then
  redis.call('HSET', KEYS[1], 'progress_at', now, 'progress_done', done)
  progress = 1
end
local last = 0
if done >= total and not h[7] then
  redis.call('HSET', KEYS[1], 'closing', now)
  last = 1
end
return {1, progress, last, waiting, paused}
"""

# KEYS: hash, done, failed, errors, codes, latency, retry, running, client's running
# ARGV: batch id, then the indexes to run again. Each still failed is taken back from the counts
# and queued to be claimed; the batch runs again. Returns how many were queued.
_RETRY = """
local queued = 0
for i = 2, #ARGV do
  local index = ARGV[i]
  if redis.call('GETBIT', KEYS[3], index) == 1 then
    local entry = cjson.decode(redis.call('HGET', KEYS[4], index) or '{}')
    redis.call('SETBIT', KEYS[3], index, 0)
    redis.call('SETBIT', KEYS[2], index, 0)
    redis.call('HDEL', KEYS[4], index)
    if entry['code'] then redis.call('HINCRBY', KEYS[5], entry['code'], -1) end
    if entry['bucket'] then redis.call('HINCRBY', KEYS[6], entry['bucket'], -1) end
    redis.call('HINCRBY', KEYS[1], 'failed', -1)
    redis.call('RPUSH', KEYS[7], index)
    queued = queued + 1
  end
end
if queued > 0 then
  redis.call('HSET', KEYS[1], 'rewrite', '1')
  -- A paused batch stays paused: its items run again when it is resumed.
  if redis.call('HGET', KEYS[1], 'status') ~= 'paused' then
    redis.call('HSET', KEYS[1], 'status', 'running')
  end
  redis.call('HINCRBY', KEYS[1], 'retries', 1)
  redis.call('HDEL', KEYS[1], 'finished_at', 'closing')
  redis.call('SADD', KEYS[8], ARGV[1])
  redis.call('SADD', KEYS[9], ARGV[1])
end
return queued
"""

# KEYS: hash, inflight. Stops claiming; returns the first never-claimed index and the in-flight.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' and status ~= 'paused' then return false end
redis.call('HSET', KEYS[1], 'cancel', '1')
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next'))
return {nxt, redis.call('SMEMBERS', KEYS[2])}
"""

# KEYS: hash, results. ARGV: lines taken, their bytes. The part is stored; forget its lines.
_PART_STORED = """
redis.call('LTRIM', KEYS[2], ARGV[1], -1)
redis.call('HINCRBY', KEYS[1], 'waiting_bytes', -tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'result_lines', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'parts', 1)
"""

# KEYS: lock. ARGV: token. Releases the lock only if we still hold it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Batch:
    id: str
    client_id: str
    type: str
    status: BatchStatus
    created_at: float
    total: int
    concurrency: int
    results_key: str
    upload_id: str
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    item_webhooks: bool
    metadata: dict[str, Any]
    started_at: float | None = None
    finished_at: float | None = None
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    next: int = 0
    parts: int = 0
    result_lines: int = 0
    cancel: bool = False
    closing: float | None = None
    in_flight: int = 0
    items_url: str | None = None
    error: dict[str, Any] | None = None  # why a `failed` batch's items could not be read
    reads: int = 0  # reads of `items_url` started
    # Runs of an item whose failures may pass (service/errors.py, JOB_ERRORS).
    item_attempts: int = 1
    # Times failed items were asked to run again: the results file is then written anew.
    retries: int = 0
    rewrite: bool = False
    # Provider tokens by kind and cost of its items so far (cached answers count none), and how
    # many items used a model without a price (their cost is not in `cost_usd`).
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    unpriced_items: int = 0
    # USD; reaching it pauses the batch.
    max_cost: float | None = None
    paused_reason: PausedReason | None = None
    paused_at: float | None = None
    paused_provider: str | None = None  # whose keys were all refused

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.canceled

    def to_hash(self) -> dict[str, str]:
        fields = {
            "id": self.id,
            "client_id": self.client_id,
            "type": self.type,
            "status": self.status,
            "created_at": repr(self.created_at),
            "total": str(self.total),
            "concurrency": str(self.concurrency),
            "results_key": self.results_key,
            "upload_id": self.upload_id,
            "webhook_url": self.webhook_url or "",
            "webhook_events": json.dumps(list(self.webhook_events)),
            "item_webhooks": "1" if self.item_webhooks else "0",
            "metadata": json.dumps(self.metadata),
            "item_attempts": str(self.item_attempts),
            "next": "0",
            "parts": "0",
        }
        if self.items_url is not None:
            fields["items_url"] = self.items_url
        if self.max_cost is not None:
            fields["max_cost"] = str(cost_units(self.max_cost))
        return fields

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes], in_flight: int) -> Batch:
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            id=h["id"],
            client_id=h["client_id"],
            type=h["type"],
            status=h["status"],  # type: ignore[arg-type]
            created_at=float(h["created_at"]),
            total=int(h["total"]),
            concurrency=int(h["concurrency"]),
            results_key=h["results_key"],
            upload_id=h["upload_id"],
            webhook_url=h["webhook_url"] or None,
            webhook_events=tuple(json.loads(h["webhook_events"])),
            item_webhooks=h["item_webhooks"] == "1",
            metadata=json.loads(h["metadata"]),
            started_at=float(h["started_at"]) if "started_at" in h else None,
            finished_at=float(h["finished_at"]) if "finished_at" in h else None,
            succeeded=int(h.get("succeeded", 0)),
            failed=int(h.get("failed", 0)),
            canceled=int(h.get("canceled", 0)),
            next=int(h.get("next", 0)),
            parts=int(h.get("parts", 0)),
            result_lines=int(h.get("result_lines", 0)),
            cancel=h.get("cancel") == "1",
            closing=float(h["closing"]) if "closing" in h else None,
            in_flight=in_flight,
            items_url=h.get("items_url") or None,
            error=json.loads(h["error"]) if h.get("error") else None,
            reads=int(h.get("reads", 0)),
            item_attempts=int(h.get("item_attempts", 1)),
            retries=int(h.get("retries", 0)),
            rewrite=h.get("rewrite") == "1",
            usage={kind: int(h.get(kind, 0)) for kind in TOKEN_KINDS},
            cost_usd=int(h.get("cost", 0)) / COST_UNITS_PER_USD,
            unpriced_items=int(h.get("unpriced_items", 0)),
            max_cost=int(h["max_cost"]) / COST_UNITS_PER_USD if "max_cost" in h else None,
            paused_reason=h.get("paused_reason") or None,  # type: ignore[arg-type]
            paused_at=float(h["paused_at"]) if "paused_at" in h else None,
            paused_provider=h.get("paused_provider") or None,
        )


@dataclass(frozen=True)
class Recorded:
    """What recording one item's end calls for next."""

    new: bool  # False: this item's end was recorded before
    progress_due: bool
    last: bool  # this was the batch's last item: finish the batch
    waiting_bytes: int
    paused: bool = False  # it brought the batch to its budget: the batch paused


class BatchStore:
    def __init__(self, redis: Redis, *, retention_s: float, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._retention_ms = int(retention_s * 1000)
        self._batch_keys = Keys(prefix)
        self._claim = redis.register_script(_CLAIM)
        self._record = redis.register_script(_RECORD)
        self._cancel = redis.register_script(_CANCEL)
        self._part_stored = redis.register_script(_PART_STORED)
        self._retry = redis.register_script(_RETRY)
        # What became of the items: read by status, with their errors and the batch's figures.
        self.outcomes = BatchOutcomes(redis, prefix)
        # Pausing (budget, keys) and resuming.
        self.pauses = BatchPauses(redis, prefix)
        self._unlock = redis.register_script(_UNLOCK)
        self._commit = redis.register_script(_COMMIT)
        self._end_receiving = redis.register_script(_END_RECEIVING)

    def key(self, batch_id: str, part: str = "") -> str:
        return self._batch_keys.batch(batch_id, part)

    def _running_key(self, client_id: str = "") -> str:
        """Running batches: all of them, or one client's."""
        return self._batch_keys.running_batches(client_id)

    def _keys(self, batch_id: str) -> list[str]:
        parts = ("", "items", "inflight", "done", "results", "failures", *_OUTCOME_PARTS)
        return [self.key(batch_id, part) for part in parts]

    # Intake: items staged as the batch's file is read, and the batch made of them at once.

    async def stage(
        self, batch_id: str, entries: Sequence[str], refused: Sequence[tuple[int, str]]
    ) -> None:
        """Append read items (and the errors of refused ones) to the batch's staged lists."""
        ttl_ms = int(STAGING_TTL_S * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            if entries:
                pipe.rpush(self.key(batch_id, "staged"), *entries)
            pipe.pexpire(self.key(batch_id, "staged"), ttl_ms)
            if refused:
                errors = [f"{index}:{error}" for index, error in refused]
                pipe.rpush(self.key(batch_id, "staged-refused"), *errors)
            # Renewed with every chunk, refused items or not: the two lists live and die together.
            pipe.pexpire(self.key(batch_id, "staged-refused"), ttl_ms)
            await pipe.execute()

    async def discard_staged(self, batch_id: str) -> None:
        await self._redis.delete(self.key(batch_id, "staged"), self.key(batch_id, "staged-refused"))

    async def commit(self, batch: Batch) -> bool:
        """The staged items become the batch's, and the batch runs: all `batch.total` of them,
        or (False: fewer are staged, or it is no longer receiving, e.g. canceled) none."""
        keys = [
            self.key(batch.id),
            self.key(batch.id, "staged"),
            self.key(batch.id, "items"),
            self.key(batch.id, "staged-refused"),
            self.key(batch.id, "refused"),
            self._running_key(),
            self._running_key(batch.client_id),
            self._batch_keys.receiving_batches,
        ]
        pairs: list[str | int] = [part for item in batch.to_hash().items() for part in item]
        args = [self._retention_ms, batch.id, batch.total, *pairs]
        done = await self._commit(keys=keys, args=args)
        if done:
            await self._list(batch)
        return bool(done)

    async def _list(self, batch: Batch) -> None:
        """In the client's list of batches (`GET /v1/batches`); a repeat is harmless."""
        await self._redis.zadd(
            self._index_key(batch.client_id), {batch.id: int(batch.created_at * 1e6)}
        )

    async def create_receiving(self, batch: Batch, spec: str) -> None:
        """A batch whose items a worker reads from `items_url`, as its `spec` (JSON) says: seen,
        not yet running."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(batch.id), mapping=batch.to_hash() | {"spec": spec})
            pipe.pexpire(self.key(batch.id), self._retention_ms)
            pipe.sadd(self._batch_keys.receiving_batches, batch.id)
            pipe.zadd(self._index_key(batch.client_id), {batch.id: int(batch.created_at * 1e6)})
            await pipe.execute()

    async def spec(self, batch_id: str) -> str | None:
        raw = await self._redis.hget(self.key(batch_id), "spec")  # type: ignore[misc]
        return raw.decode() if raw is not None else None

    async def receiving(self) -> list[str]:
        ids = await self._redis.smembers(self._batch_keys.receiving_batches)  # type: ignore[misc]
        return sorted(i.decode() for i in ids)

    async def end_receiving(
        self, batch_id: str, status: BatchStatus, error: dict[str, Any] | None, now: float
    ) -> bool:
        """A receiving batch ends before it ran (`failed`, `canceled`); False if not receiving."""
        keys = [
            self.key(batch_id),
            self.key(batch_id, "staged"),
            self.key(batch_id, "staged-refused"),
            self._batch_keys.receiving_batches,
            self.key(batch_id, "reader"),
        ]
        args: list[str | float] = [status, json.dumps(error) if error else "", now, batch_id]
        return bool(await self._end_receiving(keys=keys, args=args))

    async def take_reader(self, batch_id: str, token: str, ttl_s: float) -> int | None:
        """Become the batch's one reader: how many reads have started, this one included;
        None while another reader holds it."""
        key = self.key(batch_id, "reader")
        if not await self._redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
            return None
        return int(await self._redis.hincrby(self.key(batch_id), "reads", 1))  # type: ignore[misc]

    async def renew_reader(self, batch_id: str, ttl_s: float) -> None:
        await self._redis.pexpire(self.key(batch_id, "reader"), int(ttl_s * 1000))

    async def reader_alive(self, batch_id: str) -> bool:
        return bool(await self._redis.exists(self.key(batch_id, "reader")))

    async def release_reader(self, batch_id: str, token: str) -> None:
        await self._unlock(keys=[self.key(batch_id, "reader")], args=[token])

    async def refused(self, batch_id: str, count: int) -> list[tuple[int, dict[str, Any]]]:
        """The first `count` items refused at intake and not yet recorded."""
        raw = await self._redis.lrange(self.key(batch_id, "refused"), 0, count - 1)  # type: ignore[misc]
        found = []
        for entry in raw:
            index, _, error = entry.decode().partition(":")
            found.append((int(index), json.loads(error)))
        return found

    async def has_refused(self, batch_id: str) -> bool:
        return bool(await self._redis.exists(self.key(batch_id, "refused")))

    async def lock_renew(self, batch_id: str, what: str, token: str, ttl_s: float) -> None:
        """Keep holding a lock taken with `lock` for `ttl_s` more (if still ours)."""
        key = self.key(batch_id, f"lock:{what}")
        if await self._redis.get(key) == token.encode():
            await self._redis.pexpire(key, int(ttl_s * 1000))

    async def drop_refused(self, batch_id: str, count: int) -> None:
        await self._redis.ltrim(self.key(batch_id, "refused"), count, -1)  # type: ignore[misc]

    async def get(self, batch_id: str) -> Batch | None:
        if not is_id(batch_id):
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(batch_id))
            pipe.scard(self.key(batch_id, "inflight"))
            raw, in_flight = await pipe.execute()
        return Batch.from_hash(raw, in_flight) if raw else None

    def _index_key(self, client_id: str) -> str:
        """The client's batches by creation time, for `GET /v1/batches`."""
        return self._batch_keys.batch_index(client_id)

    async def page(
        self,
        client_id: str,
        statuses: Sequence[str] = (),
        *,
        limit: int,
        cursor: IndexCursor | None = None,
    ) -> tuple[list[Batch], IndexCursor | None]:
        """The client's batches in one of `statuses` (any: all), newest first, after `cursor`."""
        key = self._index_key(client_id)

        async def read_many(batch_ids: Sequence[str]) -> list[Batch | None]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for batch_id in batch_ids:
                    pipe.hgetall(self.key(batch_id))
                    pipe.scard(self.key(batch_id, "inflight"))
                replies = await pipe.execute()
            found = [
                Batch.from_hash(raw, in_flight) if raw else None
                for raw, in_flight in zip(replies[::2], replies[1::2], strict=True)
            ]
            # A batch's record expires a retention after it ends, which the index cannot know
            # when the batch is created; its entry goes when a page finds it gone.
            gone = [i for i, batch in zip(batch_ids, found, strict=True) if batch is None]
            if gone:
                await self._redis.zrem(key, *gone)
            return found

        return await newest(
            self._redis,
            key,
            read_many,
            lambda batch: not statuses or batch.status in statuses,
            limit=limit,
            chunk=limit if not statuses else max(limit, 50),
            cursor=cursor,
        )

    async def running(self, client_id: str = "") -> list[str]:
        ids = await self._redis.smembers(self._running_key(client_id))  # type: ignore[misc]
        return sorted(i.decode() for i in ids)

    async def claim(
        self, batch: Batch, most: int, client_cap: int, client_batches: list[str]
    ) -> tuple[bool, list[tuple[int, str]]]:
        """Take up to `most` items to run, within the batch's and the client's concurrency;
        `client_batches` are the client's running batches, whose items in flight count too.
        Whether this claim started the batch (its first item), and the items."""
        others = [self.key(other, "inflight") for other in client_batches if other != batch.id]
        parts = ("", "items", "inflight", "retry", "rerun")
        keys = [self.key(batch.id, part) for part in parts]
        found = await self._claim(keys=[*keys, *others], args=[most, client_cap, time.time()])
        return bool(found[0]), [_split(entry) for entry in found[1:]]

    async def entry(self, batch_id: str, index: int) -> tuple[int, str] | None:
        raw = await self._redis.lindex(self.key(batch_id, "items"), index)  # type: ignore[misc]
        return _split(raw) if raw is not None else None

    async def entries(self, batch_id: str, start: int, stop: int) -> list[tuple[int, str]]:
        raw = await self._redis.lrange(self.key(batch_id, "items"), start, stop)  # type: ignore[misc]
        return [_split(entry) for entry in raw]

    async def in_flight(self, batch_id: str) -> list[int]:
        members = await self._redis.smembers(self.key(batch_id, "inflight"))  # type: ignore[misc]
        return sorted(int(m) for m in members)

    async def record(
        self,
        batch_id: str,
        index: int,
        outcome: Outcome,
        line: str,
        error: dict[str, Any] | None,
        now: float,
        progress_interval_s: float,
        progress_step: int,
        *,
        has_job: bool = True,
        latency_s: float | None = None,
        usage: dict[str, int] | None = None,
        cost_usd: float | None = None,
    ) -> Recorded:
        """Record one item's end, once: later reports of the same item change nothing."""
        bucket = "" if latency_s is None else str(latency_bucket(latency_s))
        entry = ""
        if outcome == "failed":
            error = error or {"code": "INTERNAL_ERROR", "message": "no error was recorded"}
            # An item refused at intake has no job: its reference is kept with its error.
            names = ("code", "message", "field", "reference")
            kept = {k: error[k] for k in names if error.get(k) is not None}
            # The job record keeps the whole message; the batch, enough to list it.
            kept["message"] = str(kept.get("message", ""))[:_MESSAGE_CHARS]
            entry = json.dumps(kept | {"job": has_job} | ({"bucket": bucket} if bucket else {}))
        args = [
            index,
            outcome,
            line,
            entry,
            now,
            progress_interval_s,
            progress_step,
            (error or {}).get("code", "") if outcome == "failed" else "",
            bucket,
            *((usage or {}).get(kind, 0) for kind in TOKEN_KINDS),
            cost_units(cost_usd or 0.0),
            1 if usage is not None and cost_usd is None else 0,
        ]
        parts = ("", "done", "inflight", "results", "failed", "canceled", "errors", "codes")
        keys = [self.key(batch_id, p) for p in (*parts, "latency", "retry")]
        new, progress, last, waiting, paused = await self._record(keys=keys, args=args)
        return Recorded(bool(new), bool(progress), bool(last), int(waiting), bool(paused))

    async def retry(self, batch: Batch, indexes: Sequence[int]) -> int:
        """Queue failed items to run again (those still failed); the batch runs again if any
        was. How many were queued."""
        parts = ("", "done", "failed", "errors", "codes", "latency", "retry")
        keys = [self.key(batch.id, part) for part in parts]
        keys += [self._running_key(), self._running_key(batch.client_id)]
        queued = 0
        for start in range(0, len(indexes), 5000):  # one script call holds Redis: keep it short
            chunk = indexes[start : start + 5000]
            queued += int(await self._retry(keys=keys, args=[batch.id, *chunk]))
        if queued:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in self._keys(batch.id):
                    pipe.pexpire(key, self._retention_ms)
                await pipe.execute()
        return queued

    async def results_rewritten(
        self, batch_id: str, results_key: str, upload_id: str, parts: int, lines: int
    ) -> None:
        """The results file was written anew, from the records: where it is now."""
        fields = {"results_key": results_key, "upload_id": upload_id, "parts": str(parts)}
        fields |= {"result_lines": str(lines), "rewrite": "0", "waiting_bytes": "0"}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(batch_id), mapping=fields)
            pipe.delete(self.key(batch_id, "results"))
            await pipe.execute()

    async def cancel(self, batch_id: str) -> tuple[int, list[int]] | None:
        """Stop claiming; the first never-claimed index and the items in flight, or None if the
        batch is not running."""
        keys = [self.key(batch_id), self.key(batch_id, "inflight")]
        found = await self._cancel(keys=keys)
        if not found:
            return None
        start, in_flight = found
        return int(start), sorted(int(i) for i in in_flight)

    async def waiting_lines(self, batch_id: str, start: int, stop: int) -> list[bytes]:
        lines: list[bytes] = await self._redis.lrange(  # type: ignore[misc]
            self.key(batch_id, "results"), start, stop
        )
        return lines

    async def part_stored(self, batch_id: str, lines: int, size: int) -> int:
        keys = [self.key(batch_id), self.key(batch_id, "results")]
        return int(await self._part_stored(keys=keys, args=[lines, size]))

    async def lock(self, batch_id: str, what: str, token: str, ttl_s: float) -> bool:
        key = self.key(batch_id, f"lock:{what}")
        return bool(await self._redis.set(key, token, nx=True, px=int(ttl_s * 1000)))

    async def unlock(self, batch_id: str, what: str, token: str) -> None:
        await self._unlock(keys=[self.key(batch_id, f"lock:{what}")], args=[token])

    async def next_sequence(self, batch_id: str) -> int:
        return int(await self._redis.hincrby(self.key(batch_id), "sequence", 1))  # type: ignore[misc]

    async def close(self, batch: Batch, status: BatchStatus, finished_at: float) -> None:
        """The batch has ended: record it, and keep what callers read for the retention period."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(batch.id), mapping={"status": status, "finished_at": finished_at})
            pipe.delete(self.key(batch.id, "items"), self.key(batch.id, "results"))
            for key in self._keys(batch.id):
                pipe.pexpire(key, self._retention_ms)
            pipe.srem(self._running_key(), batch.id)
            pipe.srem(self._running_key(batch.client_id), batch.id)
            await pipe.execute()


def _split(entry: bytes | str) -> tuple[int, str]:
    text = entry.decode() if isinstance(entry, bytes) else entry
    index, _, body = text.partition(":")
    return int(index), body
