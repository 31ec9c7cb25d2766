"""A stand-in for an OpenAI-compatible provider: a real HTTP server on 127.0.0.1 that speaks the
images and vision chat APIs (chat streamed as server-sent events when asked), checks the API key,
and can be scripted to answer 401, 429 with Retry-After, 500, slowly, with malformed JSON, or with
a stream that stalls, breaks off or garbles: the outside world pixhook cannot reach in tests.

It counts requests per fixed time window and, like OpenAI, can enforce a requests-per-minute limit
in per-window slices, answering 429 with Retry-After and OpenAI's error body beyond it. It also
counts, per model, the calls a real provider would bill: those it answered with images or text.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.cli.devstack import free_port, wait_for

API_KEY = "sk-test-standin"


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status (with headers), a delay, or a body that is not JSON."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    malformed: bool = False
    # For chat completions: the model's text, when not the default product description.
    content: str | None = None
    # For image generations: answer with links to the images, as some providers always do.
    as_urls: bool = False
    # For image generations: these bytes as every image, instead of a PNG of the asked size.
    image: bytes | None = None
    # The error body's `code` when status is not 200 (e.g. OpenAI's 429 `insufficient_quota`).
    error_code: str = "scripted"
    # Streamed chat: the text in pieces of `chunk_chars`, each after `chunk_delay_s`; the
    # connection cut after `cut_after` pieces; `malformed` garbles the second piece.
    chunk_chars: int = 16
    chunk_delay_s: float = 0.0
    cut_after: int | None = None


@dataclass
class Window:
    """Requests that arrived in one window of `window_s`, and how many of them were refused."""

    arrived: int = 0
    refused: int = 0


class _EventStream(Response):
    """Server-sent events; a `None` among the chunks stops without ending the response, which
    makes uvicorn drop the connection: the client sees a stream break off mid-way."""

    def __init__(self, chunks: AsyncIterator[bytes | None]) -> None:
        super().__init__(media_type="text/event-stream")
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in self._chunks:
            if chunk is None:
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


USAGE = {"prompt_tokens": 850, "completion_tokens": 120, "total_tokens": 970}
PRODUCT = {
    "category": "Footwear",
    "subcategory": "Sneakers",
    "brand_detected": None,
    "dominant_colors": ["red", "white"],
    "primary_material": "canvas",
    "product_condition": "new",
    "image_quality": "high",
    "has_text_overlay": False,
    "description": "A red canvas sneaker on a light backdrop.",
    "tags": ["sneaker", "red", "canvas"],
}


class OpenAIStandIn:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.requests: list[dict[str, Any]] = []
        self._script: list[Answer] = []
        self._generated_images: list[bytes] = []
        self._paid: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._windows: dict[int, Window] = {}
        self._window_s = 1.0
        self._per_window: int | None = None
        self._retry_after = True
        self._counting_since = time.monotonic()
        app = Starlette(
            routes=[
                Route("/v1/images/generations", self._generate, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/generated/{number:int}.png", self._generated, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> OpenAIStandIn:
        self._thread.start()
        wait_for(lambda: self._server.started, "the OpenAI stand-in", 10)
        return self

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def script(self, answers: Sequence[Answer]) -> None:
        """The next requests get these answers, in order; then normal service resumes."""
        with self._lock:
            self._script = list(answers)
            self.requests.clear()

    def count_requests(
        self,
        window_s: float = 1.0,
        requests_per_minute: int | None = None,
        *,
        retry_after: bool = True,
    ) -> None:
        """Count from now in windows of `window_s`; with a limit, refuse what exceeds its slice
        (saying when to retry, unless told not to, as some providers never do)."""
        with self._lock:
            self._windows, self._window_s, self._retry_after = {}, window_s, retry_after
            self._per_window = None
            if requests_per_minute is not None:
                self._per_window = max(1, math.floor(requests_per_minute * window_s / 60))
            self._counting_since = time.monotonic()

    def paid_calls(self, model: str) -> int:
        """How many calls naming `model` were answered with images or text: what a bill counts."""
        with self._lock:
            return self._paid[model]

    def _bill(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._paid[str(body.get("model"))] += 1

    def window_counts(self) -> list[Window]:
        """Every window from the first request counted to the last, empty ones included."""
        with self._lock:
            if not self._windows:
                return []
            first, last = min(self._windows), max(self._windows)
            return [self._windows.get(i, Window()) for i in range(first, last + 1)]

    def _over_limit(self) -> float | None:
        """Counts one arrival; the seconds until its window ends when it is over the limit."""
        with self._lock:
            elapsed = time.monotonic() - self._counting_since
            index = math.floor(elapsed / self._window_s)
            window = self._windows.setdefault(index, Window())
            window.arrived += 1
            if self._per_window is None or window.arrived - window.refused <= self._per_window:
                return None
            window.refused += 1
            return (index + 1) * self._window_s - elapsed

    def _next(self) -> Answer:
        with self._lock:
            return self._script.pop(0) if self._script else Answer()

    async def _answer(self, request: Request) -> tuple[dict[str, Any], Answer | Response]:
        """The request body and the scripted answer, or the error response to send instead."""
        body = await request.json()
        with self._lock:
            self.requests.append({"path": request.url.path, "body": body, "at": time.monotonic()})
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return body, _error(401, "Incorrect API key provided", "invalid_api_key")
        wait_s = self._over_limit()
        if wait_s is not None:
            return body, self._rate_limited(str(body.get("model")), wait_s)
        answer = self._next()
        await asyncio.sleep(answer.delay_s)
        if answer.malformed and not body.get("stream"):
            return body, Response(b'{"data": [{"b64_json": ', media_type="application/json")
        if answer.status != 200:
            message, headers = f"scripted {answer.status}", answer.headers
            return body, _error(answer.status, message, answer.error_code, headers)
        return body, answer

    def _rate_limited(self, model: str, wait_s: float) -> Response:
        limit = self._per_window
        message = (
            f"Rate limit reached for {model} in organization org-standin on requests per min "
            f"(RPM): Limit {limit}, Used {limit}, Requested 1. Please try again in "
            f"{wait_s * 1000:.0f}ms. Visit https://platform.openai.com/account/rate-limits."
        )
        headers = {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": "0"}
        if self._retry_after:
            headers["retry-after"] = str(math.ceil(wait_s))
            headers["retry-after-ms"] = str(math.ceil(wait_s * 1000))
        body = {
            "error": {
                "message": message,
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        return JSONResponse(body, status_code=429, headers=headers)

    async def _chat(self, request: Request) -> Response:
        body, answer = await self._answer(request)
        if isinstance(answer, Response):
            return answer
        parts = body["messages"][0]["content"]
        if not any(p.get("type") == "image_url" for p in parts):
            return _error(400, "this model needs an image", "invalid_request_error")
        content = answer.content if answer.content is not None else json.dumps(PRODUCT)
        self._bill(body)
        if body.get("stream"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _chunks(str(body.get("model")), content, answer, with_usage)
            return _EventStream(chunks)
        choice = {"index": 0, "message": {"role": "assistant", "content": content}}
        reply = {"id": "chatcmpl-standin", "model": body.get("model"), "choices": [choice]}
        return JSONResponse(reply | {"usage": USAGE})

    async def _generate(self, request: Request) -> Response:
        body, answer = await self._answer(request)
        if isinstance(answer, Response):
            return answer
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return _error(400, "prompt is required", "invalid_request_error")
        width, height = (int(side) for side in str(body.get("size", "1024x1024")).split("x"))
        drawn = _png(width, height, body.get("seed"))
        image = drawn if answer.image is None else base64.b64encode(answer.image).decode()
        images = [image] * int(body.get("n", 1))
        self._bill(body)
        if answer.as_urls:
            data = [{"url": self._link(base64.b64decode(image))} for image in images]
        else:
            data = [{"b64_json": image} for image in images]
        return JSONResponse({"created": int(time.time()), "data": data})

    def _link(self, png: bytes) -> str:
        with self._lock:
            self._generated_images.append(png)
            return f"{self.base_url}/generated/{len(self._generated_images) - 1}.png"

    async def _generated(self, request: Request) -> Response:
        with self._lock:
            png = self._generated_images[request.path_params["number"]]
        return Response(png, media_type="image/png")


async def _chunks(
    model: str, content: str, answer: Answer, with_usage: bool
) -> AsyncIterator[bytes | None]:
    """OpenAI's stream: a role chunk, the text in pieces, a finish chunk, usage if asked, [DONE]."""
    extra = {"usage": None} if with_usage else {}

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return _event({"id": "chatcmpl-standin", "model": model, "choices": [choice]} | extra)

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
    if with_usage:
        yield _event({"id": "chatcmpl-standin", "model": model, "choices": [], "usage": USAGE})
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
