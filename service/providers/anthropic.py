"""Anthropic's Messages API as a `Wire`: one request with one key, plain or streamed, its errors
and its `anthropic-ratelimit-*` headers read into what pixhook's call loop needs.

Structured output is a forced tool (`record_answer`) whose input schema is the caller's: the
reply's text is the tool's input as JSON (streamed, its `partial_json` pieces).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from service.providers.anthropic_stream import StreamFailed, read_message, token_usage
from service.providers.chat import ChatRequest, ImagePart, Message
from service.providers.errors import (
    PROVIDER_AUTH,
    PROVIDER_BAD_RESPONSE,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    ProviderError,
    too_slow,
    unreachable,
)
from service.providers.wire import Endpoint, Forward, LimitHints, WireReply
from webhooks import parse_retry_after

VERSION = "2023-06-01"
TOOL = "record_answer"
_TOOL_DESCRIPTION = "Record the answer: every field the schema asks for, as the instructions say."
_JSON_ONLY = "Answer with one JSON object and nothing else: no prose, no code fence."
_LIMIT = "anthropic-ratelimit-"


class AnthropicWire:
    provider = "anthropic"

    async def send(
        self,
        http: httpx.AsyncClient,
        endpoint: Endpoint,
        model: str,
        request: ChatRequest,
        forward: Forward | None,
    ) -> WireReply:
        """One POST /v1/messages; streamed when `forward` is given (see `Wire.send`)."""
        body = request_body(model, request, stream=forward is not None)
        url = endpoint.base_url.rstrip("/") + "/v1/messages"
        try:
            # httpx times each read; one deadline also bounds a stream that trickles.
            async with (
                asyncio.timeout(endpoint.timeout_s),
                http.stream(
                    "POST", url, json=body, headers=_headers(endpoint), timeout=endpoint.timeout_s
                ) as response,
            ):
                hints = limit_hints(response.headers)
                await endpoint.hear(hints)
                streamed = response.headers.get("content-type", "").startswith("text/event-stream")
                if forward is not None and response.status_code == 200 and streamed:
                    return await _read_stream(response, forward, model, hints)
                await response.aread()
                reply = _reply(_parse(response, hints), model, hints)
                # A server that ignores `stream` answers in one piece: forwarded as one piece.
                if forward is not None and reply.text:
                    await forward(reply.text)
                    return WireReply(reply.text, reply.model, reply.usage, hints, chunks=1)
                return reply
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise too_slow() from exc
        except httpx.HTTPError as exc:
            raise unreachable(exc) from exc

    async def check_key(self, http: httpx.AsyncClient, endpoint: Endpoint) -> None:
        """GET /v1/models?limit=1: free, and refused (401/403) for a key that is not valid."""
        url = endpoint.base_url.rstrip("/") + "/v1/models"
        try:
            response = await http.get(
                url, params={"limit": 1}, headers=_headers(endpoint), timeout=endpoint.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise too_slow() from exc
        except httpx.HTTPError as exc:
            raise unreachable(exc) from exc
        _parse(response, limit_hints(response.headers))


def request_body(model: str, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The Messages API body for `request`."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": [_message(message) for message in request.messages],
    }
    system = request.system
    if request.json_schema is not None:
        tool = {"name": TOOL, "description": _TOOL_DESCRIPTION, "input_schema": request.json_schema}
        body |= {"tools": [tool], "tool_choice": {"type": "tool", "name": TOOL}}
    elif request.json_reply:
        system = f"{system}\n\n{_JSON_ONLY}" if system else _JSON_ONLY
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
    return body


def limit_hints(headers: httpx.Headers) -> LimitHints:
    """What `anthropic-ratelimit-*` say of the key's window. Tokens: the input tokens limit, the
    one a call's estimate can be held against before it is sent (output tokens count as they are
    written, and their limit is a tenth the size: held against a whole estimate, it would let two
    or three calls through where twenty fit)."""
    now = time.time()
    return LimitHints(
        requests_remaining=_count(headers.get(f"{_LIMIT}requests-remaining")),
        requests_reset_s=_seconds_until(headers.get(f"{_LIMIT}requests-reset"), now),
        tokens_remaining=_count(headers.get(f"{_LIMIT}input-tokens-remaining")),
        tokens_reset_s=_seconds_until(headers.get(f"{_LIMIT}input-tokens-reset"), now),
        requests_limit=_count(headers.get(f"{_LIMIT}requests-limit")),
    )


def _message(message: Message) -> dict[str, Any]:
    blocks = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": part.media_type,
                "data": base64.b64encode(part.data).decode(),
            },
        }
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part.text}
        for part in message.parts
    ]
    return {"role": message.role, "content": blocks}


def _headers(endpoint: Endpoint) -> dict[str, str]:
    return {"x-api-key": endpoint.key, "anthropic-version": VERSION}


async def _read_stream(
    response: httpx.Response, forward: Forward, model: str, hints: LimitHints
) -> WireReply:
    try:
        message = await read_message(response, forward)
    except StreamFailed as exc:
        raise _failure(exc.status, str(exc), hints) from exc
    except ProviderError as exc:
        exc.hints = hints
        raise
    return WireReply(message.text, message.model or model, message.usage, hints, message.chunks)


def _parse(response: httpx.Response, hints: LimitHints) -> dict[str, Any]:
    """The answer's JSON object, or the ProviderError its status stands for."""
    if response.status_code != 200:
        raise _failure(
            response.status_code,
            _error_message(response),
            hints,
            parse_retry_after(response.headers.get("retry-after", ""), time.time()),
        )
    try:
        answer = response.json()
    except ValueError as exc:
        raise _bad("the provider's answer is not JSON", hints) from exc
    if not isinstance(answer, dict):
        raise _bad("the provider's answer is not a JSON object", hints)
    return answer


def _failure(
    status: int, message: str, hints: LimitHints | None, retry_after_s: float | None = None
) -> ProviderError:
    """The error an Anthropic status stands for: 401/403 final, 429, 529 and 5xx retryable."""
    if status in (401, 403):
        code, retryable = PROVIDER_AUTH, False
    elif status == 429 or status >= 500:
        code, retryable = PROVIDER_UNAVAILABLE, True
    else:
        code, retryable = PROVIDER_REJECTED, False
    return ProviderError(
        f"the provider answered {status}: {message}",
        code=code,
        retryable=retryable,
        status=status,
        retry_after_s=retry_after_s if status == 429 or status >= 500 else None,
        hints=hints,
    )


def _reply(message: dict[str, Any], model: str, hints: LimitHints) -> WireReply:
    content = message.get("content")
    usage = message.get("usage")
    if not isinstance(content, list) or not isinstance(usage, dict):
        raise _bad("the provider's message has no content or no usage", hints)
    blocks = [block for block in content if isinstance(block, dict)]
    tool = [b.get("input") for b in blocks if b.get("type") == "tool_use" and b.get("name") == TOOL]
    texts = [b.get("text") for b in blocks if b.get("type") == "text"]
    if not all(isinstance(text, str) for text in texts):
        raise _bad("a text block of the provider's message has no text", hints)
    text = json.dumps(tool[0]) if tool else "".join(str(t) for t in texts)
    return WireReply(text, str(message.get("model") or model), token_usage(usage), hints)


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _count(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _seconds_until(value: str | None, now: float) -> float | None:
    """Seconds from `now` to an RFC 3339 time (Anthropic's resets)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def _bad(message: str, hints: LimitHints) -> ProviderError:
    return ProviderError(
        message, code=PROVIDER_BAD_RESPONSE, retryable=True, status=200, hints=hints
    )
