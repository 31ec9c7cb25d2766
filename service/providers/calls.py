"""Provider calls as pixhook makes them, whichever protocol: a key from the pool, the limits all
workers share for that key and model, retries with jittered backoff (Retry-After honoured), the
next model of a list when one is gone or overloaded, and the figures each call leaves (usage,
cost, time to first token) in /metrics.

A key refused with 401/403 leaves the rotation and the call moves to another key at once,
without spending an attempt; when none is left the call fails with PROVIDER_KEYS_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis

from service.backoff import backoff_s
from service.config import Settings
from service.jobs.metrics import JobMetrics
from service.providers.anthropic import AnthropicWire
from service.providers.chat import ChatReply, ChatRequest, ImagePart, OnText, TokenUsage
from service.providers.errors import PROVIDER_AUTH, ProviderError
from service.providers.estimates import text_tokens
from service.providers.key_pool import ApiKey, KeyPool
from service.providers.limits import LimitPolicy, ProviderLimits, admitted
from service.providers.openai import OpenAIWire, parse, usage
from service.providers.prices import cost_usd
from service.providers.wire import Endpoint, Heard, Wire, WireReply

log = logging.getLogger("pixhook.providers")
R = TypeVar("R")

WIRES: dict[str, Wire] = {"anthropic": AnthropicWire(), "openai": OpenAIWire()}
# A reply's tokens before it is sent, when the request allows more: about a product description.
_REPLY_TOKENS = 500
# About what a provider counts for a photo at the size pixhook uploads; settled afterwards.
_IMAGE_TOKENS = 1600
_MAX_BACKOFF_S = 60.0
# Each process starts its round of keys where the last call left it, so calls spread evenly.
_TURNS: dict[str, itertools.count[int]] = {}


@dataclass(frozen=True)
class Answered:
    """A call that succeeded: on which attempt (counted over models), with which key."""

    attempts: int
    key: ApiKey


class ProviderCalls:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        http: httpx.AsyncClient,
        metrics: JobMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._http = http
        self._metrics = metrics

    async def chat(
        self,
        provider: str,
        models: Sequence[str],
        request: ChatRequest,
        on_text: OnText | None = None,
    ) -> ChatReply:
        """The first model of `models` that answers; streamed to `on_text` when given (a new
        attempt's text replaces the last one's: see OnText)."""
        wire, started, tokens = WIRES[provider], time.perf_counter(), chat_tokens(request)
        spent, skipped = 0, []
        for index, model in enumerate(models):
            first_text = 0.0

            async def send(endpoint: Endpoint, attempt: int, model: str = model) -> WireReply:
                nonlocal first_text
                first_text = 0.0
                if on_text is None:
                    return await wire.send(self._http, endpoint, model, request, None)

                async def forward(text: str) -> None:
                    nonlocal first_text
                    first_text = first_text or time.perf_counter()
                    await on_text(text, attempt)

                return await wire.send(self._http, endpoint, model, request, forward)

            try:
                reply, answered = await self._attempts(
                    provider, model, tokens, send, _wire_figures, spent, index < len(models) - 1
                )
            except _NextModel as moved:
                spent = moved.attempts
                skipped.append({"model": model, "code": moved.error.code})
                log.warning("%s model %s failed (%s); trying the next", provider, model, moved)
                continue
            ttft_s = first_text - started if first_text else None
            return await self._settled(
                provider, model, reply, answered, started, ttft_s, on_text is not None, skipped
            )
        raise AssertionError("unreachable: the last model raises instead of moving on")

    async def images(
        self, model: str, send: Callable[[Endpoint], Awaitable[httpx.Response]]
    ) -> tuple[dict[str, Any], Answered]:
        """An OpenAI images call (generations, edits) under the same keys, limits and retries."""

        async def once(endpoint: Endpoint, attempt: int) -> dict[str, Any]:
            return parse(await send(endpoint))

        def figures(result: dict[str, Any]) -> int | None:
            used = usage(result)
            return used.input_tokens + used.output_tokens + used.cached_input_tokens

        reply, answered = await self._attempts(
            "openai", model, _REPLY_TOKENS, once, figures, 0, False
        )
        used = usage(reply)
        await self._count_usage("openai", model, used)
        return reply, answered

    async def check_keys(self, provider: str) -> list[tuple[ApiKey, ProviderError | None]]:
        """Each key in rotation tried with a cheap authenticated call; refused ones leave it."""
        pool = KeyPool.of(self._settings, self._redis, provider)
        results: list[tuple[ApiKey, ProviderError | None]] = []
        for key in await pool.in_rotation():
            try:
                await WIRES[provider].check_key(self._http, self._endpoint(provider, key))
                results.append((key, None))
            except ProviderError as exc:
                if exc.code == PROVIDER_AUTH:
                    await pool.take_out(key, exc)
                results.append((key, exc))
        return results

    async def _attempts(
        self,
        provider: str,
        model: str,
        tokens: int,
        send: Callable[[Endpoint, int], Awaitable[R]],
        figures: Callable[[R], int | None],
        spent: int,
        may_fall_back: bool,
    ) -> tuple[R, Answered]:
        pool = KeyPool.of(self._settings, self._redis, provider)
        policy, attempt = self._policy(), spent
        while True:
            keys = await pool.in_rotation()
            limits = [self._limits(provider, key, model, policy) for key in keys]
            turn = next(_TURNS.setdefault(provider, itertools.count()))
            async with admitted(limits, tokens, turn % len(keys)) as (index, admission):
                key, limit = keys[index], limits[index]
                if await pool.is_out(key):
                    # Another call's 401/403 took the key out while this one waited for its
                    # turn: the keys read before the wait are stale, read them again.
                    continue
                attempt += 1
                sent = time.perf_counter()
                endpoint = self._endpoint(provider, key, limit.heard)
                try:
                    result = await send(endpoint, attempt)
                except ProviderError as exc:
                    await self._refused(limit, admission, exc)
                    error = exc
                else:
                    await limit.settle(admission, figures(result))
                    await self._count_reply(provider, model, time.perf_counter() - sent)
                    return result, Answered(attempt, key)
            if error.code == PROVIDER_AUTH:
                await pool.take_out(key, error)
                attempt -= 1  # the provider's refusal of a key is not the request's failure
                continue
            if may_fall_back and _model_unavailable(error, attempt - spent, policy):
                raise _NextModel(error, attempt)
            if not error.retryable or attempt - spent >= self._settings.providers.max_attempts:
                raise error
            await asyncio.sleep(self._delay(attempt - spent, error.retry_after_s))

    async def _refused(self, limit: ProviderLimits, admission: Any, error: ProviderError) -> None:
        if error.status == 429:
            if self._metrics is not None:
                await self._metrics.provider_throttled(limit.provider, limit.model)
            if error.retryable:
                await limit.throttled(admission, error.retry_after_s)

    async def _settled(
        self,
        provider: str,
        model: str,
        reply: WireReply,
        answered: Answered,
        started: float,
        ttft_s: float | None,
        streamed: bool,
        skipped: list[dict[str, Any]],
    ) -> ChatReply:
        cost = await self._count_usage(provider, model, reply.usage)
        if streamed and self._metrics is not None:
            await self._metrics.provider_streamed(provider, model, ttft_s, reply.chunks)
        return ChatReply(
            reply.text,
            provider,
            model,
            reply.usage,
            cost,
            (time.perf_counter() - started) * 1000,
            answered.attempts,
            None if ttft_s is None else ttft_s * 1000,
            reply.chunks,
            answered.key.hint,
            tuple(skipped),
        )

    async def _count_usage(self, provider: str, model: str, used: TokenUsage) -> float | None:
        cost = cost_usd(self._settings, provider, model, used)
        if self._metrics is not None:
            kinds = {
                "input": used.input_tokens,
                "output": used.output_tokens,
                "cached_input": used.cached_input_tokens,
            }
            await self._metrics.provider_used(provider, model, kinds, cost)
        return cost

    async def _count_reply(self, provider: str, model: str, seconds: float) -> None:
        # Only replies and 429s: a model name the provider refuses never becomes a label.
        if self._metrics is not None:
            await self._metrics.provider_replied(provider, model, seconds)

    def _endpoint(self, provider: str, key: ApiKey, heard: Heard | None = None) -> Endpoint:
        providers = self._settings.providers
        url = providers.base_url(provider).rstrip("/")
        return Endpoint(url, key.value, providers.timeout_s, heard)

    def _limits(
        self, provider: str, key: ApiKey, model: str, policy: LimitPolicy
    ) -> ProviderLimits:
        return ProviderLimits(self._redis, provider, model, policy, key_id=key.id)

    def _policy(self) -> LimitPolicy:
        providers = self._settings.providers
        return LimitPolicy(
            per_minute=providers.requests_per_minute,
            burst=providers.burst,
            concurrency=providers.concurrency,
            lease_s=providers.timeout_s + 10,
            tokens_per_minute=providers.tokens_per_minute,
            min_factor=providers.min_rate_factor,
            recovery_s=providers.rate_recovery_s,
        )

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        providers = self._settings.providers
        jittered = backoff_s(attempt, providers.backoff_s, _MAX_BACKOFF_S)
        if retry_after_s is not None:
            return min(_MAX_BACKOFF_S, max(retry_after_s, jittered))
        return jittered


class _NextModel(Exception):
    """The model is gone or overloaded: the call moves to the next model of the list."""

    def __init__(self, error: ProviderError, attempts: int) -> None:
        super().__init__(str(error))
        self.error, self.attempts = error, attempts


def _model_unavailable(error: ProviderError, attempts: int, policy: LimitPolicy) -> bool:
    """A model the provider does not know (404), one overloaded (529), or one failing with 5xx
    on every attempt but the last: another model may answer where this one will not."""
    if error.status in (404, 529):
        return True
    return error.retryable and (error.status or 0) >= 500 and attempts >= 2


def _wire_figures(reply: WireReply) -> int | None:
    used = reply.usage
    return used.input_tokens + used.output_tokens + used.cached_input_tokens


def chat_tokens(request: ChatRequest) -> int:
    """A request's tokens before it is sent, for the token rate: its text, each image at about
    what a prepared photo costs (settled afterwards), and the reply's bound or a typical one."""
    images = sum(isinstance(p, ImagePart) for m in request.messages for p in m.parts)
    return text_tokens(request) + images * _IMAGE_TOKENS + min(request.max_tokens, _REPLY_TOKENS)
