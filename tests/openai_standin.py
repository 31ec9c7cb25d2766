"""A stand-in for an OpenAI-compatible provider: a real HTTP server on 127.0.0.1 that speaks the
images and vision chat APIs, checks the API key, and can be scripted to answer 401, 429 with
Retry-After, 500, slowly, or with malformed JSON: the outside world pixhook cannot reach in tests.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.devstack import free_port, wait_for

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
        self._lock = threading.Lock()
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
        answer = self._next()
        await asyncio.sleep(answer.delay_s)
        if answer.malformed:
            return body, Response(b'{"data": [{"b64_json": ', media_type="application/json")
        if answer.status != 200:
            headers = answer.headers
            return body, _error(answer.status, f"scripted {answer.status}", "scripted", headers)
        return body, answer

    async def _chat(self, request: Request) -> Response:
        body, answer = await self._answer(request)
        if isinstance(answer, Response):
            return answer
        parts = body["messages"][0]["content"]
        if not any(p.get("type") == "image_url" for p in parts):
            return _error(400, "this model needs an image", "invalid_request_error")
        content = answer.content if answer.content is not None else json.dumps(PRODUCT)
        usage = {"prompt_tokens": 850, "completion_tokens": 120, "total_tokens": 970}
        choice = {"index": 0, "message": {"role": "assistant", "content": content}}
        reply = {"id": "chatcmpl-standin", "model": body.get("model"), "choices": [choice]}
        return JSONResponse(reply | {"usage": usage})

    async def _generate(self, request: Request) -> Response:
        body, answer = await self._answer(request)
        if isinstance(answer, Response):
            return answer
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return _error(400, "prompt is required", "invalid_request_error")
        width, height = (int(side) for side in str(body.get("size", "1024x1024")).split("x"))
        images = [_png(width, height, body.get("seed")) for _ in range(int(body.get("n", 1)))]
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


def _png(width: int, height: int, seed: Any) -> str:
    shade = (int(seed or 0) * 37) % 256
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 120, 200)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)
