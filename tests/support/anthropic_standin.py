"""A stand-in for Anthropic's Messages API: a real HTTP server on 127.0.0.1 answering
`POST /v1/messages` (plain, or streamed with Anthropic's event sequence) and `GET /v1/models`.

Keys go in `x-api-key` (or `Authorization: Bearer`, as the SDK sends them): several are valid,
`revoke(key)` makes one answer 401 `authentication_error` and `forbid(key)` 403
`permission_error`. Each key has its own request
windows (`count_requests`), every reply carries `anthropic-ratelimit-*` headers, and beyond the
limit the answer is 429 `rate_limit_error` with `retry-after`. `script([Answer(...)])` scripts
overloads (529), server errors, delays, malformed JSON, streams cut or garbled or failing with an
`error` event, and slow pieces.

What it answers: with `tools`, a `tool_use` block for the first tool whose input is the scripted
`content` parsed as JSON (default PRODUCT); else `content`, or PRODUCT as JSON text when the
messages hold an image, or `text_reply` for a text-only chat.

Usage is exact and deterministic (`input_tokens_of`, `text_tokens`, `image_tokens`):
input = ceil(characters / 4) of the system prompt, every text block and the JSON of `tools`, plus
each image's ceil(width * height / 750) after shrinking it to fit 1568 px on its long side, as
Anthropic counts images; output = ceil(characters / 4) of the answer's text (for a tool, the JSON
of its input). `Answer.cache_read_tokens` / `cache_write_tokens` move that many input tokens to
`cache_read_input_tokens` / `cache_creation_input_tokens`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.standin_server import PRODUCT, EventStream, Scripted, StandInServer
from tests.support.standin_usage import anthropic_blocks, text_tokens
from tests.support.standin_usage import anthropic_headers as rate_limit_headers
from tests.support.standin_usage import anthropic_image_tokens as image_tokens
from tests.support.standin_usage import anthropic_input_tokens as input_tokens_of

__all__ = [
    "API_KEY",
    "ERROR_TYPES",
    "MODELS",
    "PRODUCT",
    "TEXT_REPLY",
    "AnthropicStandIn",
    "Answer",
    "image_tokens",
    "input_tokens_of",
    "rate_limit_headers",
    "text_tokens",
]

API_KEY = "sk-ant-test-standin"
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5")
TEXT_REPLY = (
    "Thank you for asking. The stand-in answers every text-only chat with these same words, "
    "so that a test knows the text, its pieces and its tokens in advance."
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Answer(Scripted):
    """One scripted answer (see `Scripted`), and for Anthropic's API:"""

    # The error body's `type` when status is not 200; default by status (ERROR_TYPES).
    error_type: str | None = None
    # Streamed: an `error` event of type `error_event` after `error_after` pieces.
    error_after: int | None = None
    error_event: str = "overloaded_error"
    # Of the input tokens, how many were read from and written to the prompt cache.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class AnthropicStandIn(StandInServer[Answer]):
    def __init__(self, keys: Sequence[str] = (API_KEY,), models: Sequence[str] = MODELS) -> None:
        routes = [
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ]
        super().__init__(routes, keys, Answer(), "the Anthropic stand-in")
        self.models = list(models)
        self.text_reply = TEXT_REPLY

    def start(self) -> AnthropicStandIn:
        self._start()
        return self

    async def _messages(self, request: Request) -> Response:
        key = _key(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        entry = self._record(request.url.path, body, key)
        refused = self._refusal(key, request)
        if refused is not None:
            return refused
        model = str(body.get("model"))
        if self._is_retired(model):
            return _error(404, "not_found_error", f"model: {model}", self._headers(key))
        wait_s = self._over_limit(key)
        if wait_s is not None:
            return self._rate_limited(key, wait_s)
        answer = self._next()
        await asyncio.sleep(answer.delay_s)
        if answer.status != 200:
            error_type = answer.error_type or ERROR_TYPES.get(answer.status, "api_error")
            headers = self._headers(key) | answer.headers
            return _error(answer.status, error_type, f"scripted {answer.status}", headers)
        if answer.malformed and not body.get("stream"):
            return Response(b'{"type": "message", "content": [', media_type="application/json")
        reply = self._reply(body, answer)
        usage = _usage(input_tokens_of(body), reply.output_tokens, answer)
        entry["usage"] = usage
        self._bill(model, key, input_tokens_of(body), reply.output_tokens)
        if body.get("stream"):
            return EventStream(_events(model, reply, usage, answer), self._headers(key))
        message = _message(model, reply) | {"usage": usage}
        return JSONResponse(message, headers=self._headers(key))

    def _refusal(self, key: str, request: Request) -> Response | None:
        if request.headers.get("anthropic-version") is None:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        state = self._key_state(key)
        if state in ("revoked", "unknown"):
            return _error(401, "authentication_error", "invalid x-api-key")
        if state == "forbidden":
            return _error(403, "permission_error", "this key may not use the API")
        return None

    def _reply(self, body: dict[str, Any], answer: Answer) -> _Reply:
        tools = body.get("tools") or []
        if tools:
            tool_input = json.loads(answer.content) if answer.content else PRODUCT
            return _Reply(json.dumps(tool_input), str(tools[0]["name"]), tool_input)
        if answer.content is not None:
            return _Reply(answer.content)
        with_image = any(block.get("type") == "image" for block in anthropic_blocks(body))
        return _Reply(json.dumps(PRODUCT) if with_image else self.text_reply)

    def _rate_limited(self, key: str, wait_s: float) -> Response:
        headers = self._headers(key)
        if self._retry_after:
            headers["retry-after"] = str(math.ceil(wait_s))
        message = "This request would exceed your organization's rate limit of requests per minute."
        return _error(429, "rate_limit_error", message, headers)

    def _headers(self, key: str) -> dict[str, str]:
        return rate_limit_headers(self._quota(key)) if self.limit_headers else {}

    async def _models(self, request: Request) -> Response:
        refused = self._refusal(_key(request), request)
        if refused is not None:
            return refused
        limit = int(request.query_params.get("limit", "20"))
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-10-01T00:00:00Z"}
            for m in self.models[:limit]
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        page = {"data": data, "has_more": len(self.models) > limit}
        return JSONResponse(page | {"first_id": first, "last_id": last})


@dataclass(frozen=True)
class _Reply:
    text: str
    tool: str | None = None
    tool_input: Any = None

    @property
    def output_tokens(self) -> int:
        return text_tokens(self.text)


def _key(request: Request) -> str:
    # `x-api-key` as the API documents it; the SDK sends the key as a bearer token.
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    return request.headers.get("x-api-key") or bearer


def _usage(input_tokens: int, output_tokens: int, answer: Answer) -> dict[str, int]:
    cached = answer.cache_read_tokens + answer.cache_write_tokens
    return {
        "input_tokens": input_tokens - cached,
        "cache_creation_input_tokens": answer.cache_write_tokens,
        "cache_read_input_tokens": answer.cache_read_tokens,
        "output_tokens": output_tokens,
    }


def _message(model: str, reply: _Reply) -> dict[str, Any]:
    if reply.tool is not None:
        block = {"type": "tool_use", "id": "toolu_standin", "name": reply.tool}
        content, stop = [block | {"input": reply.tool_input}], "tool_use"
    else:
        content, stop = [{"type": "text", "text": reply.text}], "end_turn"
    return {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
    }


async def _events(
    model: str, reply: _Reply, usage: dict[str, int], answer: Answer
) -> AsyncIterator[bytes | None]:
    """message_start, content_block_start, ping, the deltas, content_block_stop, message_delta
    (with the output tokens), message_stop: the sequence Anthropic streams."""
    start = _message(model, reply) | {"content": [], "stop_reason": None}
    yield _event("message_start", {"message": start | {"usage": usage | {"output_tokens": 1}}})
    if reply.tool is not None:
        block = {"type": "tool_use", "id": "toolu_standin", "name": reply.tool, "input": {}}
        delta_type, field_name = "input_json_delta", "partial_json"
    else:
        block, delta_type, field_name = {"type": "text", "text": ""}, "text_delta", "text"
    yield _event("content_block_start", {"index": 0, "content_block": block})
    yield _event("ping", {})
    size = answer.chunk_chars
    for number, start_at in enumerate(range(0, len(reply.text), size)):
        if number == answer.cut_after:
            yield None
            return
        if number == answer.error_after:
            error = {"type": answer.error_event, "message": "Overloaded"}
            yield _event("error", {"error": error})
            return
        await asyncio.sleep(answer.chunk_delay_s)
        if answer.malformed and number == 1:
            yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
            continue
        delta = {"type": delta_type, field_name: reply.text[start_at : start_at + size]}
        yield _event("content_block_delta", {"index": 0, "delta": delta})
    yield _event("content_block_stop", {"index": 0})
    stop = "tool_use" if reply.tool is not None else "end_turn"
    delta_usage = {"output_tokens": usage["output_tokens"]}
    message_delta = {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": delta_usage}
    yield _event("message_delta", message_delta)
    yield _event("message_stop", {})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name} | data)}\n\n".encode()


def _error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)
