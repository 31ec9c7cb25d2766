"""Reading a streamed Anthropic message (server-sent events) into its text, model and usage.

The events: message_start (model, input usage), content_block_start, content_block_delta
(text_delta, or input_json_delta for a tool's input), content_block_stop, message_delta (output
usage, stop reason), message_stop, ping, and error. A stream that ends before message_stop,
breaks off or garbles fails with PROVIDER_BAD_RESPONSE, retryable.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.providers.chat import TokenUsage
from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError
from service.providers.wire import Forward

# An error event's type as the HTTP status the same error has as an answer.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


@dataclass
class StreamedMessage:
    text: str = ""
    model: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    chunks: int = 0


class StreamFailed(Exception):
    """An `error` event: what the provider said, and the status its type stands for."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"the provider failed mid-stream ({error_type}): {message}")
        self.status = ERROR_STATUS.get(error_type, 500)


async def read_message(response: httpx.Response, forward: Forward) -> StreamedMessage:
    """The streamed message; `forward` gets each piece of text (or of a tool's JSON input)."""
    message, parts, finished = StreamedMessage(), [], False
    start_usage: dict[str, Any] = {}
    try:
        async with aclosing(_events(response.aiter_lines())) as events:
            async for name, data in events:
                event = _event(name, data)
                kind = event["type"]
                if kind == "message_start":
                    message.model = str(_field(event, "message").get("model") or "")
                    start_usage = _usage_of(_field(event, "message"))
                elif kind == "content_block_delta":
                    piece = _piece(_field(event, "delta"))
                    if piece:
                        parts.append(piece)
                        message.chunks += 1
                        await forward(piece)
                elif kind == "message_delta":
                    start_usage |= _usage_of(event)
                elif kind == "message_stop":
                    finished = True
                    break
                elif kind == "error":
                    error = _field(event, "error")
                    raise StreamFailed(str(error.get("type")), str(error.get("message"))[:300])
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        raise _bad_stream(f"the stream broke off: {exc}") from exc
    if not finished:
        raise _bad_stream("the stream ended before the message did")
    message.text, message.usage = "".join(parts), token_usage(start_usage)
    return message


def token_usage(usage: dict[str, Any]) -> TokenUsage:
    """Anthropic's usage as pixhook counts it: tokens written to the prompt cache are input."""
    return TokenUsage(
        input_tokens=_count(usage, "input_tokens") + _count(usage, "cache_creation_input_tokens"),
        output_tokens=_count(usage, "output_tokens"),
        cached_input_tokens=_count(usage, "cache_read_input_tokens"),
    )


def _bad_stream(message: str) -> ProviderError:
    return ProviderError(message, code=PROVIDER_BAD_RESPONSE, retryable=True)


async def _events(lines: AsyncIterator[str]) -> AsyncGenerator[tuple[str, str], None]:
    """Each server-sent event's name and data (its `data:` lines joined)."""
    name, data = "", []
    async for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and (name or data):
            yield name, "\n".join(data)
            name, data = "", []
    if name or data:
        yield name, "\n".join(data)


def _event(name: str, data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise _bad_stream(f"a streamed {name or 'event'} is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise _bad_stream(f"a streamed {name or 'event'} has no type")
    return event


def _field(event: dict[str, Any], name: str) -> dict[str, Any]:
    value = event.get(name)
    if not isinstance(value, dict):
        raise _bad_stream(f"a streamed {event['type']} has no {name}")
    return value


def _piece(delta: dict[str, Any]) -> str:
    piece = delta.get("text") if delta.get("type") == "text_delta" else delta.get("partial_json")
    if not isinstance(piece or "", str):
        raise _bad_stream("a streamed delta's text is not a string")
    return str(piece or "")


def _usage_of(holder: dict[str, Any]) -> dict[str, Any]:
    usage = holder.get("usage")
    if usage is None:
        return {}
    if not isinstance(usage, dict):
        raise _bad_stream("a streamed usage is not an object")
    return {key: value for key, value in usage.items() if value is not None}


def _count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
