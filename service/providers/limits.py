"""Provider limits shared by every worker through Redis: calls in flight, requests and tokens per
minute, lowered on 429 and recovered gradually.

Rates are GCRAs (generic cell rate algorithm), one per provider and model, as providers limit
each model separately: a key holds the theoretical arrival time (TAT), so a burst is let through
up to `burst` requests and the long-run rate never exceeds `per_minute`, however many workers ask.
Tokens are a second GCRA whose cost is the request's estimated tokens; after the call the actual
`usage.total_tokens` is settled against it (the difference moves the TAT). Tokens may burst to
one second's worth, as providers enforce per-minute limits in about per-second slices; a request
estimated above that waits for an idle bucket, then overdraws it.

The configured rates are a ceiling, not a promise: the provider's real limit may be lower (shared
keys, other tenants, quota tiers). Each 429 multiplies a factor held in Redis by 0.5 (down to a
floor), and every worker then spaces its requests by `interval / factor`; the factor climbs back
linearly, reaching 1.0 after `recovery_s` from zero. That is AIMD, as in TCP congestion control:
many uncoordinated senders converge on a fair share below the limit, because cutting
multiplicatively clears an overload at once while probing additively costs at most a few 429s
per recovery. A 429 for a request admitted before the last cut reports on the old rate and is
not cut again (TCP cuts once per window), so eight requests refused together halve the rate once.
`Retry-After` pauses every worker until then (capped), and afterwards requests restart at the
steady rate, without a burst.

All time is Redis `TIME`, read inside the scripts: every decision is made against one clock, so a
worker whose clock is a second ahead can neither jump the queue nor misread another worker's pause.
(Scripts replicate their effects, not themselves, since Redis 5, so replicas agree.)
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from service.keys import PREFIX, Keys
from service.providers.wire import LimitHints

# Milliseconds with their fraction: two calls in one millisecond are still ordered, so a 429 to
# a call admitted after the last cut cuts again.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

# The factor now (and when it was last cut): what the cut left, plus the linear recovery since.
_FACTOR = """
local function current_factor(key, per_ms)
  local state = redis.call('HMGET', key, 'factor', 'at')
  if not state[1] then return 1, 0 end
  return math.min(1, tonumber(state[1]) + (now - tonumber(state[2])) * per_ms), tonumber(state[2])
end
"""

# KEYS: rate TAT, token TAT, factor, paused-until, window. ARGV: interval_ms, burst, ms per
# token (0: no token limit), token cost, token capacity, recovery per ms. Returns {wait_ms,
# now_ms, seq, spent}; wait 0 is go; seq numbers the admission in the key's window hash and
# spent is the tokens let through up to and with it.
# wait_ms and now_ms go as strings: Redis would truncate a Lua number to an integer.
_ADMIT = (
    _NOW
    + _FACTOR
    + """
local paused = tonumber(redis.call('GET', KEYS[4]) or '0')
if paused > now then return {math.ceil(paused - now), tostring(now), 0, 0} end
local factor = current_factor(KEYS[3], tonumber(ARGV[6]))
local interval = tonumber(ARGV[1]) / factor
local tolerance = interval * (tonumber(ARGV[2]) - 1)
-- A waiter that wakes a little after its turn (a quarter of an interval at most) keeps the
-- schedule: restarting it from `now` lost each one's lateness, ~5% of the rate at 45/s. Later
-- than that, the limiter was idle and starts from now, with no credit for the idle time. After a
-- pause, start at the steady rate: no burst into a provider that just refused us.
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now - interval / 4 then tat = now end
tat = math.max(tat, paused + tolerance)
local wait = tat - tolerance - now
local per_token, cost, capacity = tonumber(ARGV[3]) / factor, tonumber(ARGV[4]), tonumber(ARGV[5])
local token_tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
if per_token > 0 then
  wait = math.max(wait, token_tat + (math.min(cost, capacity) - capacity) * per_token - now)
end
-- What the provider's own headers said is left in its window, less what was let through since
-- the reply that said it: when it is spent, wait for the window's reset.
local w = redis.call('HMGET', KEYS[5], 'seq', 'requests', 'requests_at', 'requests_reset',
  'spent', 'tokens', 'tokens_at', 'tokens_reset')
local seq, spent = tonumber(w[1] or '0'), tonumber(w[5] or '0')
if w[2] and now < tonumber(w[4]) and tonumber(w[2]) - (seq - tonumber(w[3])) <= 0 then
  wait = math.max(wait, tonumber(w[4]) - now)
end
if w[6] and now < tonumber(w[8]) and tonumber(w[6]) - (spent - tonumber(w[7])) < cost then
  wait = math.max(wait, tonumber(w[8]) - now)
end
if wait > 0 then return {tostring(wait), tostring(now), 0, 0} end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
if per_token > 0 then
  local next_tat = token_tat + cost * per_token
  redis.call('SET', KEYS[2], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
end
seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
spent = redis.call('HINCRBY', KEYS[5], 'spent', cost)
redis.call('PEXPIRE', KEYS[5], 3600000)
return {0, tostring(now), seq, spent}
"""
)

# KEYS: window. ARGV: the admission's seq and tokens spent before it, requests remaining and
# reset ms (-1: not said), tokens remaining and reset ms (-1). A reply to an earlier admission
# than the one that last spoke is older news and changes nothing.
_HINTS = (
    _NOW
    + """
local seq = tonumber(ARGV[1])
if ARGV[3] ~= '-1' and seq >= tonumber(redis.call('HGET', KEYS[1], 'requests_at') or '0') then
  redis.call('HSET', KEYS[1], 'requests', ARGV[3], 'requests_at', seq,
    'requests_reset', now + tonumber(ARGV[4]))
end
if ARGV[5] ~= '-1' and seq >= tonumber(redis.call('HGET', KEYS[1], 'tokens_seq') or '0') then
  redis.call('HSET', KEYS[1], 'tokens', ARGV[5], 'tokens_at', ARGV[2], 'tokens_seq', seq,
    'tokens_reset', now + tonumber(ARGV[6]))
end
return 1
"""
)

# KEYS: token TAT, factor. ARGV: ms per token, token difference (actual - estimate), recovery per
# ms. A debit pushes the TAT on; a credit pulls it back, but never banks capacity before now.
_SETTLE = (
    _NOW
    + _FACTOR
    + """
local factor = current_factor(KEYS[2], tonumber(ARGV[3]))
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
tat = tat + tonumber(ARGV[2]) * tonumber(ARGV[1]) / factor
if tat <= now then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now) + 1000)
return 1
"""
)

# KEYS: factor, paused-until. ARGV: admitted_at_ms, decrease, floor, recovery per ms, pause_ms.
_THROTTLED = (
    _NOW
    + _FACTOR
    + """
local per_ms = tonumber(ARGV[4])
local factor, cut_at = current_factor(KEYS[1], per_ms)
if tonumber(ARGV[1]) > cut_at then
  factor = math.max(tonumber(ARGV[3]), factor * tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], 'factor', factor, 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((1 - factor) / per_ms) + 1000)
end
local pause = tonumber(ARGV[5])
if pause > 0 and now + pause > tonumber(redis.call('GET', KEYS[2]) or '0') then
  -- kept past its end, so that admissions can restart without a burst
  redis.call('SET', KEYS[2], now + pause, 'PX', pause + 60000)
end
return 1
"""
)

# KEYS: slots. ARGV: lease_ms, limit, holder. Holders whose lease ran out (a dead worker) are
# dropped; a holder asking again renews its lease.
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)


@dataclass(frozen=True)
class LimitPolicy:
    per_minute: float
    burst: int
    concurrency: int
    lease_s: float
    tokens_per_minute: int = 0  # 0: no token limit
    min_factor: float = 0.1
    recovery_s: float = 60.0  # from factor 0 back to 1.0; one halving takes half of it
    decrease: float = 0.5
    max_pause_s: float = 60.0


@dataclass(frozen=True)
class Admission:
    """One request let through: when (Redis time, ms) and the tokens it was charged."""

    at_ms: float
    tokens: int
    # Its place among the key's admissions, and the tokens admitted up to it: a reply's limit
    # headers are news of the window as it was when this request arrived.
    seq: int = 0
    spent: int = 0


@dataclass(frozen=True)
class RateState:
    factor: float  # the share of the configured rates in force now
    paused_for_s: float


class ProviderLimits:
    def __init__(
        self,
        redis: Redis,
        provider: str,
        model: str,
        policy: LimitPolicy,
        prefix: str = PREFIX,
        key_id: str = "",
    ) -> None:
        self._redis = redis
        self._policy = policy
        self.provider, self.model = provider, model  # for the metrics of the calls it admits
        keys = Keys(prefix)
        # Each API key has its own limits at the provider, so its own state here.
        model_key = keys.provider_model(f"{provider}:{key_id}" if key_id else provider, model)
        self._rate_key = f"{model_key}:rate"
        self._tokens_key = f"{model_key}:tokens"
        self._factor_key = f"{model_key}:factor"
        self._paused_key = f"{model_key}:paused"
        self._window_key = f"{model_key}:window"
        # In flight is the provider's (our account's) concern, whatever the model.
        self._slots_key = keys.provider_slots(provider)
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._throttled = redis.register_script(_THROTTLED)
        self._acquire = redis.register_script(_ACQUIRE)
        self._hints = redis.register_script(_HINTS)
        self._recovery_per_ms = 1 / (policy.recovery_s * 1000)

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[Admission]:
        """Wait for a free call slot, then for the rates to allow one more request of `tokens`."""
        async with admitted([self], tokens) as (_, admission):
            yield admission

    async def try_admit(self, tokens: int) -> Admission | float:
        """Let one request of `tokens` through now, or say in how many seconds to ask again."""
        policy = self._policy
        args = [
            60_000 / policy.per_minute,
            policy.burst,
            self._ms_per_token,
            tokens,
            policy.tokens_per_minute / 60,
            self._recovery_per_ms,
        ]
        keys = [
            self._rate_key,
            self._tokens_key,
            self._factor_key,
            self._paused_key,
            self._window_key,
        ]
        wait_ms, now_ms, seq, spent = await self._admit(keys=keys, args=args)
        if float(wait_ms) > 0:
            return float(wait_ms) / 1000
        return Admission(float(now_ms), tokens, int(seq), int(spent))

    async def heard(self, admission: Admission, hints: LimitHints) -> None:
        """What the provider's rate-limit headers said in answer to `admission`'s request."""
        if hints.requests_remaining is None and hints.tokens_remaining is None:
            return
        await self._hints(
            keys=[self._window_key],
            args=[
                admission.seq,
                admission.spent,
                *_said(hints.requests_remaining, hints.requests_reset_s),
                *_said(hints.tokens_remaining, hints.tokens_reset_s),
            ],
        )

    async def settle(self, admission: Admission, used_tokens: int | None) -> None:
        """Charge the difference between the tokens a call used and what it was charged."""
        if not self._policy.tokens_per_minute or used_tokens is None:
            return
        await self._settle(
            keys=[self._tokens_key, self._factor_key],
            args=[self._ms_per_token, used_tokens - admission.tokens, self._recovery_per_ms],
        )

    async def throttled(self, admission: Admission, retry_after_s: float | None) -> None:
        """The provider answered 429: lower the rate for every worker, pause for `Retry-After`."""
        pause_s = min(retry_after_s or 0.0, self._policy.max_pause_s)
        await self._throttled(
            keys=[self._factor_key, self._paused_key],
            args=[
                admission.at_ms,
                self._policy.decrease,
                self._policy.min_factor,
                self._recovery_per_ms,
                int(pause_s * 1000),
            ],
        )

    async def state(self) -> RateState:
        """What every worker sees now; for tests and operators."""
        seconds, micros = await self._redis.time()
        now_ms = seconds * 1000 + micros / 1000
        cut, cut_at = await self._redis.hmget(self._factor_key, ["factor", "at"])  # type: ignore[misc]
        paused_until = float(await self._redis.get(self._paused_key) or 0)
        factor = 1.0
        if cut is not None:
            recovered = (now_ms - float(cut_at)) * self._recovery_per_ms
            factor = min(1.0, float(cut) + recovered)
        return RateState(factor, max(0.0, paused_until - now_ms) / 1000)

    @property
    def _ms_per_token(self) -> float:
        return 60_000 / self._policy.tokens_per_minute if self._policy.tokens_per_minute else 0.0

    async def release_slot(self, holder: str) -> None:
        await self._redis.zrem(self._slots_key, holder)

    async def wait_for_slot(self, holder: str) -> None:
        lease_ms = int(self._policy.lease_s * 1000)
        while not await self._acquire(
            keys=[self._slots_key], args=[lease_ms, self._policy.concurrency, holder]
        ):
            await asyncio.sleep(0.05)


@asynccontextmanager
async def admitted(
    limits: Sequence[ProviderLimits], tokens: int, start: int = 0
) -> AsyncIterator[tuple[int, Admission]]:
    """A call slot (the provider's, shared by all its keys), then the first of `limits` (one per
    key, tried from `start`) whose rates let a request of `tokens` through: its index and the
    admission. When none does, waits for the soonest."""
    first, holder = limits[0], secrets.token_hex(8)
    await first.wait_for_slot(holder)
    try:
        while True:
            waits = []
            for offset in range(len(limits)):
                index = (start + offset) % len(limits)
                got = await limits[index].try_admit(max(tokens, 0))
                if isinstance(got, Admission):
                    break
                waits.append(got)
            else:
                await asyncio.sleep(min(waits))
                continue
            break
        await first.wait_for_slot(holder)  # renews the lease the wait may have used up
        yield index, got
    finally:
        await first.release_slot(holder)


def _said(remaining: int | None, reset_s: float | None) -> tuple[int, int]:
    if remaining is None:
        return -1, -1
    return remaining, int(max(0.0, reset_s or 0.0) * 1000)
