"""What one provider protocol does for pixhook: send one chat request with one key and read the
answer (streamed or not), and check a key. Retries, keys, limits and fallback are the caller's
(service/providers/calls.py); a wire makes exactly one HTTP request per call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from service.providers.chat import ChatRequest, TokenUsage


@dataclass(frozen=True)
class LimitHints:
    """What a reply's rate-limit headers said of the key's window: what is left, and in how many
    seconds it is whole again (Anthropic's `anthropic-ratelimit-*`, OpenAI's `x-ratelimit-*`).
    Tokens are those a call's estimate is held against (each wire says which). `requests_limit`
    is the window's whole allowance: what may go once it resets, before a reply speaks of the
    new one."""

    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_remaining: int | None = None
    tokens_reset_s: float | None = None
    requests_limit: int | None = None


@dataclass(frozen=True)
class WireReply:
    text: str
    # The model as the provider names it in its answer (e.g. a dated snapshot).
    model: str
    usage: TokenUsage
    hints: LimitHints = field(default_factory=LimitHints)
    # Streamed: the pieces of text the provider sent.
    chunks: int = 0


# Told what a reply's rate-limit headers say, as soon as they arrive.
Heard = Callable[["LimitHints"], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    """Where a provider answers and with which key, within how long; and who is told of each
    reply's rate-limit headers the moment they arrive (a streamed reply's arrive long before its
    end, and the window they speak of goes on meanwhile)."""

    base_url: str
    key: str = field(repr=False)
    timeout_s: float
    heard: Heard | None = field(default=None, compare=False)

    async def hear(self, hints: LimitHints) -> None:
        if self.heard is not None:
            await self.heard(hints)


# Gets each piece of a streamed reply's text as it arrives.
Forward = Callable[[str], Awaitable[None]]


class Wire(Protocol):
    provider: str

    async def send(
        self,
        http: httpx.AsyncClient,
        endpoint: Endpoint,
        model: str,
        request: ChatRequest,
        forward: Forward | None,
    ) -> WireReply:
        """One request; streamed when `forward` is given. Raises ProviderError: 401/403
        PROVIDER_AUTH (not retryable), 429 and 5xx/529 and timeouts and broken streams
        retryable (with `retry_after_s` and `hints` where the reply says), 404 and other 4xx
        PROVIDER_REJECTED not retryable, each with its `status`."""
        ...

    async def check_key(self, http: httpx.AsyncClient, endpoint: Endpoint) -> None:
        """A cheap authenticated call (listing models); raises ProviderError as `send` does."""
        ...
