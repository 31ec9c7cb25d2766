"""Reading a streamed chat completion (server-sent events) into the reply a plain call returns."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import httpx

from service.providers.errors import PROVIDER_BAD_RESPONSE, PROVIDER_UNAVAILABLE, ProviderError


async def read_stream(
    response: httpx.Response, forward: Callable[[str], Awaitable[None]]
) -> dict[str, Any]:
    """The streamed chunks joined into a plain reply; `forward` gets each piece of text."""
    parts: list[str] = []
    reply: dict[str, Any] = {"model": None, "usage": None}
    finished = False
    try:
        async with aclosing(_event_data(response.aiter_lines())) as events:
            async for data in events:
                if data == "[DONE]":
                    finished = True
                    break
                chunk, text, finish_reason = _chunk(data)
                reply |= {key: chunk[key] for key in ("id", "model", "usage") if chunk.get(key)}
                finished = finished or finish_reason
                if text:
                    parts.append(text)
                    await forward(text)
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        raise _bad_stream(f"the stream broke off: {exc}") from exc
    if not finished:
        raise _bad_stream("the stream ended before the reply did")
    message = {"role": "assistant", "content": "".join(parts)}
    return reply | {"choices": [{"index": 0, "message": message}]}


async def _event_data(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The data of each server-sent event (its `data:` lines joined); other fields are ignored."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield "\n".join(data)
            data = []
    if data:
        yield "\n".join(data)


def _chunk(data: str) -> tuple[dict[str, Any], str, bool]:
    """A chunk, its text and whether it ends the reply; anything else is a garbled stream."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise _bad_stream("a streamed chunk is not JSON") from exc
    if not isinstance(chunk, dict):
        raise _bad_stream("a streamed chunk is not a JSON object")
    if "error" in chunk:
        raise ProviderError(
            f"the provider failed mid-stream: {str(chunk['error'])[:300]}",
            code=PROVIDER_UNAVAILABLE,
            retryable=True,
        )
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or not isinstance(chunk.get("usage") or {}, dict):
        raise _bad_stream("a streamed chunk has no list of choices")
    if not choices:
        return chunk, "", False  # the usage chunk
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    text = delta.get("content") if isinstance(delta, dict) else None
    if not isinstance(delta, dict) or not isinstance(text or "", str):
        raise _bad_stream("a streamed chunk has no choices[0].delta")
    return chunk, text or "", choices[0].get("finish_reason") is not None


def _bad_stream(message: str) -> ProviderError:
    return ProviderError(message, code=PROVIDER_BAD_RESPONSE, retryable=True)
