"""An OpenAI-compatible HTTP client: retries with jitter, honours Retry-After, fails fast on auth,
and streams chat completions (server-sent events, read by chat_stream.py) when asked to.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from service.backoff import backoff_s
from service.config import Settings
from service.fetch import tls_context
from service.jobs.metrics import JobMetrics
from service.providers.chat_stream import read_stream
from service.providers.errors import (
    PROVIDER_AUTH,
    PROVIDER_BAD_RESPONSE,
    PROVIDER_NOT_CONFIGURED,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    ProviderError,
)
from service.providers.limits import LimitPolicy, ProviderLimits
from webhooks import parse_retry_after


@dataclass(frozen=True)
class ProviderConfig:
    base_url: str
    api_key: str = field(repr=False)
    timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0


@dataclass(frozen=True)
class Usage:
    latency_ms: float
    attempts: int
    # Streamed calls: from the call's start (as latency_ms) to the first text that was kept.
    ttft_ms: float | None = None


# Called with each piece of a streamed reply's text and the attempt it belongs to: a stream that
# broke is retried whole, so a new attempt's text replaces the earlier attempt's.
OnText = Callable[[str, int], Awaitable[None]]
_Send = Callable[[int], Awaitable[dict[str, Any]]]
_STREAM = {"stream": True, "stream_options": {"include_usage": True}}
# A reply's tokens before it is sent: what the request allows, else about a product description.
_REPLY_TOKENS = 500
# OpenAI's price of a 1024x1024 image at high detail; settled against the real usage afterwards.
_IMAGE_TOKENS = 765


class OpenAIClient:
    def __init__(
        self,
        config: ProviderConfig,
        http: httpx.AsyncClient,
        limits: ProviderLimits,
        metrics: JobMetrics | None = None,
    ) -> None:
        self._config = config
        self._http = http
        self._limits = limits
        self._metrics = metrics

    async def post_json(
        self, path: str, body: dict[str, Any], *, tokens: int | None = None
    ) -> tuple[dict[str, Any], Usage]:
        """POST and parse; 5xx, 429 and timeouts are retried, 401/403 and other 4xx are not.

        `tokens` is charged against the token rate before the call (default: an estimate)."""
        started = time.perf_counter()
        reply, attempts = await self._retrying(
            body, tokens, lambda attempt: self._post_once(path, body)
        )
        return reply, Usage(_ms_since(started), attempts)

    async def stream_chat(
        self, body: dict[str, Any], on_text: OnText, *, tokens: int | None = None
    ) -> tuple[dict[str, Any], Usage]:
        """A chat completion, streamed: `on_text` gets the text as it arrives, and the reply comes
        back shaped like a plain one. Errors before the stream are those of `post_json`; a stream
        that breaks or garbles is retried whole, then fails with PROVIDER_BAD_RESPONSE."""
        started, first_text = time.perf_counter(), [0.0]

        async def attempt_once(attempt: int) -> dict[str, Any]:
            first_text[0] = 0.0

            async def forward(text: str) -> None:
                first_text[0] = first_text[0] or time.perf_counter()
                await on_text(text, attempt)

            return await self._stream_once(body | _STREAM, forward)

        reply, attempts = await self._retrying(body, tokens, attempt_once)
        ttft_ms = (first_text[0] - started) * 1000 if first_text[0] else None
        return reply, Usage(_ms_since(started), attempts, ttft_ms)

    async def _retrying(
        self, body: dict[str, Any], tokens: int | None, send: _Send
    ) -> tuple[dict[str, Any], int]:
        estimate = estimate_tokens(body) if tokens is None else tokens
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._limited(send, attempt, estimate), attempt
            except ProviderError as exc:
                if not exc.retryable or attempt >= self._config.max_attempts:
                    raise
                await asyncio.sleep(self._delay(attempt, exc.retry_after_s))

    async def _limited(self, send: _Send, attempt: int, tokens: int) -> dict[str, Any]:
        # Every attempt, retries included, counts against the limits all workers share.
        async with self._limits.slot(tokens) as admission:
            sent = time.perf_counter()
            try:
                reply = await send(attempt)
            except ProviderError as exc:
                if exc.status == 429:
                    await self._count(throttled=True)
                if exc.status == 429 and exc.retryable:
                    await self._limits.throttled(admission, exc.retry_after_s)
                raise
            await self._count(seconds=time.perf_counter() - sent)
            await self._limits.settle(admission, _total_tokens(reply))
            return reply

    async def _count(self, *, seconds: float = 0.0, throttled: bool = False) -> None:
        # Only replies and 429s: a model name the provider refuses never becomes a label.
        if self._metrics is None:
            return
        provider, model = self._limits.provider, self._limits.model
        if throttled:
            await self._metrics.provider_throttled(provider, model)
        else:
            await self._metrics.provider_replied(provider, model, seconds)

    async def _post_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(
                self._url(path), json=body, headers=self._headers, timeout=self._config.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise _too_slow() from exc
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc
        return _parse(response)

    async def _stream_once(
        self, body: dict[str, Any], forward: Callable[[str], Awaitable[None]]
    ) -> dict[str, Any]:
        url, timeout_s = self._url("/v1/chat/completions"), self._config.timeout_s
        try:
            # httpx times each read; one deadline also bounds a stream that trickles.
            async with (
                asyncio.timeout(timeout_s),
                self._http.stream(
                    "POST", url, json=body, headers=self._headers, timeout=timeout_s
                ) as response,
            ):
                content_type = response.headers.get("content-type", "")
                if response.status_code == 200 and content_type.startswith("text/event-stream"):
                    return await read_stream(response, forward)
                await response.aread()
                reply = _parse(response)
                # A server that ignores `stream` answers in one piece: forwarded as one piece.
                if isinstance(text := _message_text(reply), str) and text:
                    await forward(text)
                return reply
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _too_slow() from exc
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc

    def _url(self, path: str) -> str:
        return self._config.base_url.rstrip("/") + path

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._config.api_key}"}

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        jittered = backoff_s(attempt, self._config.backoff_s, self._config.max_backoff_s)
        if retry_after_s is not None:
            return min(self._config.max_backoff_s, max(retry_after_s, jittered))
        return jittered


def _parse(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if status in (401, 403):
        raise ProviderError(
            f"the provider refused our credentials ({status})",
            code=PROVIDER_AUTH,
            retryable=False,
            status=status,
        )
    if status == 429 and _error_field(response, "code") == "insufficient_quota":
        # OpenAI's 429 for an exhausted balance: waiting does not help, and it says nothing of rate.
        raise ProviderError(
            f"the provider account is out of quota: {_message(response)}",
            code=PROVIDER_REJECTED,
            retryable=False,
            status=status,
        )
    if status == 429 or status >= 500:
        raise ProviderError(
            f"the provider answered {status}",
            code=PROVIDER_UNAVAILABLE,
            retryable=True,
            status=status,
            retry_after_s=_retry_after_s(response.headers),
        )
    if status != 200:
        raise ProviderError(
            f"the provider rejected the request ({status}): {_message(response)}",
            code=PROVIDER_REJECTED,
            retryable=False,
            status=status,
        )
    try:
        reply = response.json()
    except ValueError as exc:
        raise ProviderError(
            "the provider's answer is not JSON", code=PROVIDER_BAD_RESPONSE, retryable=True
        ) from exc
    if not isinstance(reply, dict):
        raise ProviderError(
            "the provider's answer is not a JSON object", code=PROVIDER_BAD_RESPONSE, retryable=True
        )
    return reply


def _message(response: httpx.Response) -> str:
    return _error_field(response, "message") or response.text[:300]


def _error_field(response: httpx.Response, name: str) -> str:
    try:
        return str(response.json()["error"][name] or "")[:300]
    except (ValueError, KeyError, TypeError):
        return ""


def _retry_after_s(headers: httpx.Headers) -> float | None:
    # OpenAI also sends the wait in milliseconds, which a one-second window needs.
    try:
        milliseconds = float(headers.get("retry-after-ms", ""))
    except ValueError:
        milliseconds = math.nan
    if math.isfinite(milliseconds) and milliseconds >= 0:
        return milliseconds / 1000
    return parse_retry_after(headers.get("retry-after", ""), time.time())


def _message_text(reply: dict[str, Any]) -> Any:
    try:
        return reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


def _total_tokens(reply: dict[str, Any]) -> int | None:
    usage = reply.get("usage")
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def estimate_tokens(body: dict[str, Any]) -> int:
    """A request's tokens before it is sent: ~4 characters a token, images at high detail."""
    text, images = 0, 0
    for message in body.get("messages", []):
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        text += sum(len(str(p.get("text", ""))) for p in parts if p.get("type") == "text")
        images += sum(1 for p in parts if p.get("type") == "image_url")
    text += len(str(body.get("prompt", "")))
    reply = body.get("max_completion_tokens") or body.get("max_tokens") or _REPLY_TOKENS
    return text // 4 + images * _IMAGE_TOKENS + int(reply)


def _too_slow() -> ProviderError:
    return ProviderError(
        "the provider did not answer in time", code=PROVIDER_UNAVAILABLE, retryable=True
    )


def _unreachable(exc: Exception) -> ProviderError:
    return ProviderError(
        f"the provider could not be reached: {exc}", code=PROVIDER_UNAVAILABLE, retryable=True
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def decode_b64_image(value: Any) -> bytes:
    """An image from a `b64_json` field; a bad one is the provider's fault, not the caller's."""
    if not isinstance(value, str):
        raise ProviderError("b64_json is missing", code=PROVIDER_BAD_RESPONSE, retryable=False)
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ProviderError(
            "b64_json is not base64", code=PROVIDER_BAD_RESPONSE, retryable=False
        ) from exc


@asynccontextmanager
async def open_client(
    settings: Settings, redis: Redis, model: str, http: httpx.AsyncClient | None = None
) -> AsyncIterator[OpenAIClient]:
    """A client for the provider's `model`, limited together with every other worker's. Pass the
    process's `http` client (see `provider_http`) so connections, and TLS sessions, are reused."""
    if not settings.providers.openai_base_url:
        raise ProviderError(
            "no OpenAI-compatible provider is configured (PIXHOOK_OPENAI_BASE_URL)",
            code=PROVIDER_NOT_CONFIGURED,
            retryable=False,
        )
    config = ProviderConfig(
        settings.providers.openai_base_url,
        settings.providers.openai_api_key,
        timeout_s=settings.providers.timeout_s,
        max_attempts=settings.providers.max_attempts,
        backoff_s=settings.providers.backoff_s,
    )
    policy = LimitPolicy(
        per_minute=settings.providers.requests_per_minute,
        burst=settings.providers.burst,
        concurrency=settings.providers.concurrency,
        lease_s=settings.providers.timeout_s + 10,
        tokens_per_minute=settings.providers.tokens_per_minute,
        min_factor=settings.providers.min_rate_factor,
        recovery_s=settings.providers.rate_recovery_s,
    )
    limits, metrics = ProviderLimits(redis, "openai", model, policy), JobMetrics(redis)
    if http is not None:
        yield OpenAIClient(config, http, limits, metrics)
        return
    async with provider_http() as own:
        yield OpenAIClient(config, own, limits, metrics)


def provider_http() -> httpx.AsyncClient:
    """The HTTP client provider calls share within a process."""
    return httpx.AsyncClient(verify=tls_context(), trust_env=False)
