"""`image.analyze`: the local analysis always; with `provider: "openai"`, also the e-commerce
attributes a vision model sees, cached by (image, prompt version, model, brands)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from service import analysis
from service.config import Settings
from service.errors import InvalidInput
from service.jobs import Job
from service.providers import vision
from service.providers.openai import open_client
from service.tasks.context import TaskContext
from service.unknown_fields import refuse_unknown_fields

NAME = "image.analyze"
PROVIDERS = ("openai",)
MAX_BRANDS = 50
_FIELDS = frozenset({"provider", "model", "known_brands"})
# Streamed text is forwarded in pieces at most this often or this long, so a long reply is a few
# dozen stream entries, not thousands of Redis writes.
DELTA_INTERVAL_S = 0.1
DELTA_CHARS = 200


def parse_input(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    refuse_unknown_fields(raw, _FIELDS, "input")
    provider = raw.get("provider")
    if provider is not None and provider not in PROVIDERS:
        raise InvalidInput(
            f"provider must be one of: {', '.join(PROVIDERS)}", field="input.provider"
        )
    model = raw.get("model", settings.openai_vision_model)
    if not isinstance(model, str) or not model:
        raise InvalidInput("model must be a model name", field="input.model")
    return {"provider": provider, "model": model, "known_brands": _brands(raw.get("known_brands"))}


def input_schema(settings: Settings) -> dict[str, Any]:
    """JSON Schema of what `parse_input` accepts."""
    brand = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"}
    properties = {
        "provider": {"enum": [*PROVIDERS, None]},
        "model": {"type": "string", "minLength": 1, "default": settings.openai_vision_model},
        "known_brands": {"type": ["array", "null"], "maxItems": MAX_BRANDS, "items": brand},
    }
    assert properties.keys() == _FIELDS, "describe every input field"
    return {"type": "object", "properties": properties, "additionalProperties": False}


def output_schema() -> dict[str, Any]:
    """JSON Schema of what `run` returns: `attributes` and `provider` with a provider only."""
    provider = {
        "type": "object",
        "properties": {
            "name": {"enum": list(PROVIDERS)},
            "model": {"type": "string"},
            "prompt_version": {"type": "string"},
            "usage": {"type": ["object", "null"]},
            "latency_ms": {"type": "number"},
            "ttft_ms": {"type": ["number", "null"]},
            "attempts": {"type": "integer"},
            "cached": {"type": "boolean"},
        },
        "required": ["name", "model", "cached"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            # service/analysis.py and service/providers/vision.py own these two shapes.
            "analysis": {"type": "object"},
            "attributes": {"type": "object"},
            "provider": provider,
        },
        "required": ["analysis"],
        "additionalProperties": False,
    }


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    max_pixels = ctx.settings.max_image_pixels
    result = await ctx.decode(
        partial(analysis.decode_bytes, image, max_pixels),
        partial(analysis.analyze, image, max_pixels),
    )
    output: dict[str, Any] = {"analysis": result}
    if job.input.get("provider") == "openai":
        output.update(await _attributes(image, job.input, ctx))
    return output


async def _attributes(image: bytes, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    settings, model, brands = ctx.settings, params["model"], params["known_brands"]
    # Another decode of the photo: admitted against the budget as the analysis was.
    prepare = (image, settings.vision_max_side, settings.max_image_pixels)
    jpeg = await ctx.decode(
        partial(vision.prepare_bytes, *prepare), partial(vision.prepare_image, *prepare)
    )
    key = _cache_key(jpeg, model, brands)
    cached = await ctx.redis.get(key)
    if cached is not None:
        found: dict[str, Any] = json.loads(cached)
        return {"attributes": found["attributes"], "provider": found["provider"] | {"cached": True}}
    request = vision.chat_request(model, jpeg, brands)
    async with open_client(settings, ctx.redis, model, ctx.http) as client:
        if settings.provider_stream:
            deltas = Deltas(ctx.emit)
            reply, usage = await client.stream_chat(request, deltas.add)
            await deltas.flush()
        else:
            reply, usage = await client.post_json("/v1/chat/completions", request)
    attributes = vision.parse_attributes(vision.reply_text(reply), brands)
    provider = {
        "name": "openai",
        "model": model,
        "prompt_version": vision.PROMPT_VERSION,
        "usage": reply.get("usage"),
        "latency_ms": round(usage.latency_ms, 1),
        "ttft_ms": None if usage.ttft_ms is None else round(usage.ttft_ms, 1),
        "attempts": usage.attempts,
    }
    entry = json.dumps({"attributes": attributes, "provider": provider})
    await ctx.redis.set(key, entry, px=int(settings.vision_cache_ttl_s * 1000))
    return {"attributes": attributes, "provider": provider | {"cached": False}}


class Deltas:
    """Streamed text, coalesced into `job.output.delta` events of `{"text", "attempt"}`.

    A new attempt (the stream broke and was retried) starts the text again: readers keep the
    pieces of the highest attempt."""

    def __init__(self, emit: Callable[[str, dict[str, Any]], Awaitable[str]]) -> None:
        self._emit = emit
        self._pending: list[str] = []
        self._attempt = 1
        self._sent_at = 0.0

    async def add(self, text: str, attempt: int) -> None:
        if attempt != self._attempt:
            await self.flush()
            self._attempt = attempt
        self._pending.append(text)
        if (
            time.monotonic() - self._sent_at >= DELTA_INTERVAL_S
            or sum(map(len, self._pending)) >= DELTA_CHARS
        ):
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            await self._emit("job.output.delta", {"text": text, "attempt": self._attempt})
            self._sent_at = time.monotonic()


def _cache_key(jpeg: bytes, model: str, brands: list[str]) -> str:
    # The same photo, asked the same way of the same model, is not paid for twice.
    digest = hashlib.sha256(jpeg).hexdigest()
    brands_digest = hashlib.sha256("\n".join(brands).encode()).hexdigest()[:16]
    versions = f"{vision.PROMPT_VERSION}:{vision.PREPARATION_VERSION}"
    return f"pixhook:vision:{digest}:{versions}:{model}:{brands_digest}"


def _brands(value: Any) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_BRANDS
        or not all(isinstance(b, str) and 0 < len(b.strip()) <= 100 for b in value)
    ):
        raise InvalidInput(
            f"known_brands must be a list of at most {MAX_BRANDS} brand names",
            field="input.known_brands",
        )
    return sorted({b.strip() for b in value})
