"""A chat call as pixhook asks it and reads its answer, whichever provider serves it.

Tasks build a `ChatRequest`; the provider layer speaks Anthropic's Messages API or OpenAI's chat
completions for it and returns a `ChatReply` whose usage is counted the same way for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TokenUsage:
    """Tokens as the provider billed them. `input_tokens` excludes what was read from the
    provider's prompt cache (`cached_input_tokens`, billed at the cached price); images are in
    the input, counted as the provider counts them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
        }


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    data: bytes = field(repr=False)
    media_type: str = "image/jpeg"


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    parts: tuple[TextPart | ImagePart, ...]


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None
    # The reply must be one JSON object; with a schema, one the schema admits (the provider's
    # structured output where it has one, the prompt's instructions where not).
    json_reply: bool = False
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatReply:
    text: str
    provider: str
    # The model that answered: with a list of models, perhaps not the first.
    model: str
    usage: TokenUsage
    # None: the model has no price in the table (PIXHOOK_PROVIDER_PRICES).
    cost_usd: float | None
    latency_ms: float
    attempts: int
    # Streamed calls: from the call's start to the first text that was kept; and the pieces.
    ttft_ms: float | None = None
    chunks: int = 0
    # The last four characters of the key that was answered, as logs and /info show keys.
    key_hint: str = ""
    # Models of the list tried before `model` answered: each {"model", "code"}.
    skipped_models: tuple[dict[str, Any], ...] = ()

    def as_output(self) -> dict[str, Any]:
        """The call as a job's output shows it (`provider`)."""
        streamed_s = (self.latency_ms - (self.ttft_ms or 0.0)) / 1000
        return {
            "name": self.provider,
            "model": self.model,
            "usage": self.usage.as_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 1),
            "attempts": self.attempts,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "chunks": self.chunks,
            "chunks_per_s": round(self.chunks / streamed_s, 1)
            if self.chunks and streamed_s > 0
            else None,
            "key": f"…{self.key_hint}",
            "skipped_models": list(self.skipped_models),
            "cached": False,
        }


# Called with each piece of a streamed reply's text and the attempt it belongs to: a stream that
# broke is retried whole, so a new attempt's text replaces the earlier attempt's.
OnText = Callable[[str, int], Awaitable[None]]
