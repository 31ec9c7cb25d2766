"""A stand-in for an OpenAI-compatible provider: a real HTTP server on 127.0.0.1 that speaks chat
completions (vision and text, streamed as server-sent events when asked, `response_format`
json_schema accepted), image generations and edits, and the models list: the outside world
pixhook cannot reach in tests.

Keys go in `Authorization: Bearer`: several are valid, `revoke(key)` makes one answer 401 and
`forbid(key)` 403. Each key has its own request windows (`count_requests`), every reply carries
`x-ratelimit-*` headers (resets in OpenAI's duration format, `1s`, `6m0s`), and beyond the limit
the answer is 429 with Retry-After and OpenAI's `rate_limit_exceeded` body. `script([Answer(...)])`
scripts 401, 429, 500, delays, malformed JSON, streams that stall, break off or garble.

Chats are answered with `content`, else PRODUCT as JSON text when the messages hold an image or
`response_format` asks for JSON, else `text_reply`. Usage is exact and deterministic
(`prompt_tokens_of`): prompt = ceil(characters / 4) of every text part and string content plus
the JSON of `response_format`, plus each image by OpenAI's tile rule (`image_tokens`);
completion = ceil(characters / 4) of the answer. `paid_calls` counts what a bill would.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.standin_server import (
    PRODUCT,
    EventStream,
    Scripted,
    StandInServer,
    Window,
)
from tests.support.standin_usage import duration, openai_parts, text_tokens
from tests.support.standin_usage import openai_headers as rate_limit_headers
from tests.support.standin_usage import openai_image_tokens as image_tokens
from tests.support.standin_usage import openai_prompt_tokens as prompt_tokens_of

__all__ = [
    "API_KEY",
    "MODELS",
    "PRODUCT",
    "TEXT_REPLY",
    "Answer",
    "OpenAIStandIn",
    "Window",
    "duration",
    "image_tokens",
    "prompt_tokens_of",
    "rate_limit_headers",
    "text_tokens",
]

API_KEY = "sk-test-standin"
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-image-1")
TEXT_REPLY = (
    "Thank you for asking. The stand-in answers every text-only chat with these same words, "
    "so that a test knows the text, its pieces and its tokens in advance."
)


@dataclass(frozen=True)
class Answer(Scripted):
    """One scripted answer (see `Scripted`), and for OpenAI's APIs:"""

    # For image generations and edits: answer with links to the images, as some providers do.
    as_urls: bool = False
    # For image generations and edits: these bytes as every image, not a PNG of the asked size.
    image: bytes | None = None
    # The error body's `code` when status is not 200 (e.g. OpenAI's 429 `insufficient_quota`).
    error_code: str = "scripted"
    # Of the prompt tokens, how many OpenAI read from its prompt cache.
    cached_tokens: int = 0


class OpenAIStandIn(StandInServer[Answer]):
    def __init__(
        self,
        keys: Sequence[str] = (API_KEY,),
        *,
        models: Sequence[str] = MODELS,
        require_image: bool = False,
    ) -> None:
        routes = [
            Route("/v1/images/generations", self._generate, methods=["POST"]),
            Route("/v1/images/edits", self._edit, methods=["POST"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/generated/{number:int}.png", self._generated, methods=["GET"]),
        ]
        super().__init__(routes, keys, Answer(), "the OpenAI stand-in")
        self.models = list(models)
        self.text_reply = TEXT_REPLY
        # A vision-only provider: chats without an image are refused with 400.
        self.require_image = require_image
        self._generated_images: list[bytes] = []

    def start(self) -> OpenAIStandIn:
        self._start()
        return self

    async def _answer(
        self, request: Request, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any], Answer | Response]:
        """The key, the request's record and the scripted answer, or the error to send instead."""
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        entry = self._record(request.url.path, body, key)
        refused = self._refusal(key)
        if refused is not None:
            return key, entry, refused
        model = str(body.get("model"))
        if self._is_retired(model):
            message = f"The model `{model}` does not exist or you do not have access to it."
            return key, entry, _error(404, message, "model_not_found", self._headers(key))
        wait_s = self._over_limit(key)
        if wait_s is not None:
            return key, entry, self._rate_limited(key, model, wait_s)
        answer = self._next()
        await asyncio.sleep(answer.delay_s)
        if answer.malformed and not body.get("stream"):
            return key, entry, Response(b'{"data": [{"b64_json": ', media_type="application/json")
        if answer.status != 200:
            message, headers = f"scripted {answer.status}", self._headers(key) | answer.headers
            return key, entry, _error(answer.status, message, answer.error_code, headers)
        return key, entry, answer

    def _refusal(self, key: str) -> Response | None:
        state = self._key_state(key)
        if state in ("revoked", "unknown"):
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        if state == "forbidden":
            return _error(403, "You are not allowed to use this API", "permission_denied")
        return None

    def _rate_limited(self, key: str, model: str, wait_s: float) -> Response:
        limit = self._per_window
        message = (
            f"Rate limit reached for {model} in organization org-standin on requests per min "
            f"(RPM): Limit {limit}, Used {limit}, Requested 1. Please try again in "
            f"{wait_s * 1000:.0f}ms. Visit https://platform.openai.com/account/rate-limits."
        )
        headers = self._headers(key)
        if self._retry_after:
            headers["retry-after"] = str(math.ceil(wait_s))
            headers["retry-after-ms"] = str(math.ceil(wait_s * 1000))
        error = {"message": message, "type": "requests", "param": None}
        return JSONResponse(
            {"error": error | {"code": "rate_limit_exceeded"}}, status_code=429, headers=headers
        )

    def _headers(self, key: str) -> dict[str, str]:
        return rate_limit_headers(self._quota(key)) if self.limit_headers else {}

    async def _chat(self, request: Request) -> Response:
        key, entry, answer = await self._answer(request, await request.json())
        if isinstance(answer, Response):
            return answer
        body = entry["body"]
        refused = _refuse_chat(body, self.require_image)
        if refused is not None:
            return refused
        content = answer.content if answer.content is not None else self._default_content(body)
        prompt, completion = prompt_tokens_of(body), text_tokens(content)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": answer.cached_tokens},
        }
        entry["usage"] = usage
        model = str(body.get("model"))
        self._bill(model, key, prompt, completion)
        headers = self._headers(key)
        if body.get("stream"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _chunks(model, content, answer, usage if with_usage else None)
            return EventStream(chunks, headers)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        reply = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
        }
        return JSONResponse(reply | {"usage": usage}, headers=headers)

    def _default_content(self, body: dict[str, Any]) -> str:
        response_format = body.get("response_format") or {}
        wants_json = response_format.get("type") in ("json_object", "json_schema")
        with_image = any(part.get("type") == "image_url" for part in openai_parts(body))
        return json.dumps(PRODUCT) if wants_json or with_image else self.text_reply

    async def _generate(self, request: Request) -> Response:
        key, entry, answer = await self._answer(request, await request.json())
        if isinstance(answer, Response):
            return answer
        return self._images(key, entry["body"], answer)

    async def _edit(self, request: Request) -> Response:
        async with request.form() as form:
            files = [f for name in ("image", "image[]") for f in form.getlist(name)]
            images = [await f.read() for f in files if isinstance(f, UploadFile)]
            body = {k: v for k, v in form.items() if isinstance(v, str)} | {"images": images}
        key, entry, answer = await self._answer(request, body)
        if isinstance(answer, Response):
            return answer
        if not images:
            return _error(400, "image is required", "invalid_request_error")
        return self._images(key, body, answer)

    def _images(self, key: str, body: dict[str, Any], answer: Answer) -> Response:
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return _error(400, "prompt is required", "invalid_request_error")
        width, height = (int(side) for side in str(body.get("size", "1024x1024")).split("x"))
        drawn = _png(width, height, body.get("seed"))
        image = drawn if answer.image is None else base64.b64encode(answer.image).decode()
        images = [image] * int(body.get("n", 1))
        self._bill(str(body.get("model")), key, 0, 0)
        if answer.as_urls:
            data = [{"url": self._link(base64.b64decode(image))} for image in images]
        else:
            data = [{"b64_json": image} for image in images]
        return JSONResponse({"created": int(time.time()), "data": data}, headers=self._headers(key))

    def _link(self, png: bytes) -> str:
        with self._lock:
            self._generated_images.append(png)
            return f"{self.base_url}/generated/{len(self._generated_images) - 1}.png"

    async def _generated(self, request: Request) -> Response:
        with self._lock:
            png = self._generated_images[request.path_params["number"]]
        return Response(png, media_type="image/png")

    async def _models(self, request: Request) -> Response:
        refused = self._refusal(request.headers.get("authorization", "").removeprefix("Bearer "))
        if refused is not None:
            return refused
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "standin"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})


def _refuse_chat(body: dict[str, Any], require_image: bool) -> Response | None:
    if require_image and not any(p.get("type") == "image_url" for p in openai_parts(body)):
        return _error(400, "this model needs an image", "invalid_request_error")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema") or {}
        if not isinstance(schema.get("name"), str) or not isinstance(schema.get("schema"), dict):
            return _error(400, "json_schema needs a name and a schema", "invalid_request_error")
    return None


async def _chunks(
    model: str, content: str, answer: Answer, usage: dict[str, Any] | None
) -> AsyncIterator[bytes | None]:
    """OpenAI's stream: a role chunk, the text in pieces, a finish chunk, usage if asked, [DONE]."""
    extra = {"usage": None} if usage is not None else {}
    head = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "model": model}

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return _event(head | {"choices": [choice]} | extra)

    yield chunk({"role": "assistant", "content": ""})
    size = answer.chunk_chars
    for number, start in enumerate(range(0, len(content), size)):
        if number == answer.cut_after:
            yield None
            return
        await asyncio.sleep(answer.chunk_delay_s)
        if answer.malformed and number == 1:
            yield b'data: {"choices": [{"delta": {"content": "\n\n'
            continue
        yield chunk({"content": content[start : start + size]})
    yield chunk({}, "stop")
    if usage is not None:
        yield _event(head | {"choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _png(width: int, height: int, seed: Any) -> str:
    shade = (int(seed or 0) * 37) % 256
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 120, 200)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)
