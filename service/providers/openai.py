"""An OpenAI-compatible HTTP client: retries with jitter, honours Retry-After, fails fast on auth.

PixhookError → JobFailure → ProviderError(code, retryable)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from service.config import Settings
from service.errors import JobFailure
from service.fetch import tls_context
from service.providers.limits import LimitPolicy, ProviderLimits
from webhooks.sender import parse_retry_after

# Stable failure codes a job can end with.
PROVIDER_AUTH = "PROVIDER_AUTH"
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
PROVIDER_BAD_RESPONSE = "PROVIDER_BAD_RESPONSE"
PROVIDER_REJECTED = "PROVIDER_REJECTED"
PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"


class ProviderError(JobFailure):
    """A provider call failed; `retryable` says whether another attempt may succeed."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


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


class OpenAIClient:
    def __init__(
        self, config: ProviderConfig, http: httpx.AsyncClient, limits: ProviderLimits
    ) -> None:
        self._config = config
        self._http = http
        self._limits = limits

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        """POST and parse; 5xx, 429 and timeouts are retried, 401/403 and other 4xx are not."""
        started, attempt = time.perf_counter(), 0
        while True:
            attempt += 1
            try:
                # Every attempt, retries included, counts against the limits all workers share.
                async with self._limits.slot():
                    reply = await self._post_once(path, body)
            except ProviderError as exc:
                if not exc.retryable or attempt >= self._config.max_attempts:
                    raise
                await asyncio.sleep(self._delay(attempt, exc.retry_after_s))
                continue
            return reply, Usage((time.perf_counter() - started) * 1000, attempt)

    async def _post_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._config.base_url.rstrip("/") + path
        headers = {"authorization": f"Bearer {self._config.api_key}"}
        try:
            response = await self._http.post(
                url, json=body, headers=headers, timeout=self._config.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "the provider did not answer in time", code=PROVIDER_UNAVAILABLE, retryable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"the provider could not be reached: {exc}",
                code=PROVIDER_UNAVAILABLE,
                retryable=True,
            ) from exc
        return _parse(response)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        backoff = min(self._config.max_backoff_s, self._config.backoff_s * 2.0 ** (attempt - 1))
        jittered = backoff * random.uniform(0.5, 1.0)
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
    if status == 429 or status >= 500:
        raise ProviderError(
            f"the provider answered {status}",
            code=PROVIDER_UNAVAILABLE,
            retryable=True,
            status=status,
            retry_after_s=parse_retry_after(response.headers.get("retry-after", ""), time.time()),
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
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


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
async def open_client(settings: Settings, redis: Redis) -> AsyncIterator[OpenAIClient]:
    """A client for the configured provider, limited together with every other worker's."""
    if not settings.openai_base_url:
        raise ProviderError(
            "no OpenAI-compatible provider is configured (PIXHOOK_OPENAI_BASE_URL)",
            code=PROVIDER_NOT_CONFIGURED,
            retryable=False,
        )
    config = ProviderConfig(
        settings.openai_base_url,
        settings.openai_api_key,
        timeout_s=settings.provider_timeout_s,
        max_attempts=settings.provider_max_attempts,
        backoff_s=settings.provider_backoff_s,
    )
    policy = LimitPolicy(
        per_minute=settings.provider_requests_per_minute,
        burst=settings.provider_burst,
        concurrency=settings.provider_concurrency,
        lease_s=settings.provider_timeout_s + 10,
    )
    async with httpx.AsyncClient(verify=tls_context(), trust_env=False) as http:
        yield OpenAIClient(config, http, ProviderLimits(redis, "openai", policy))
