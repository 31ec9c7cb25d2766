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

Each API key has its own limits at the provider, so its own state here (`key_id`); `admitted`
admits a call on the first of several keys' limits that lets it through. The provider's own
rate-limit headers have the last word: what a reply said is left of the key's window, less what
was admitted after the request it answers, holds calls back until the window's reset, before
the provider would refuse them (`heard`).

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
from service.providers.limit_scripts import ACQUIRE, ADMIT, HINTS, SETTLE, THROTTLED
from service.providers.wire import LimitHints


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
        self._admit = redis.register_script(ADMIT)
        self._settle = redis.register_script(SETTLE)
        self._throttled = redis.register_script(THROTTLED)
        self._acquire = redis.register_script(ACQUIRE)
        self._hints = redis.register_script(HINTS)
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
        wait_ms, now_ms = await self._admit(keys=keys, args=args)
        if float(wait_ms) > 0:
            return float(wait_ms) / 1000
        return Admission(float(now_ms), tokens)

    async def heard(self, hints: LimitHints) -> None:
        """What a reply's rate-limit headers said of the key's window, as they arrive: what is
        left of it now, so what is admitted from now on counts against it."""
        if hints.requests_remaining is None and hints.tokens_remaining is None:
            return
        await self._hints(
            keys=[self._window_key],
            args=[
                *_said(hints.requests_remaining, hints.requests_reset_s),
                *_said(hints.tokens_remaining, hints.tokens_reset_s),
                -1 if hints.requests_limit is None else hints.requests_limit,
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
