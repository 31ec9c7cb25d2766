"""`image.analyze`: the local analysis always; with `provider: "openai"`, also the e-commerce
attributes a vision model sees, cached by (image, prompt version, model, brands)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, Field

from service.config import Settings
from service.imaging import analysis
from service.jobs.model import Job
from service.keys import KEYS
from service.providers import vision
from service.providers.openai import open_client
from service.shapes.fields import OneOf
from service.shapes.validation import REQUEST
from service.tasks.context import TaskContext
from service.tasks.single_flight import SingleFlight

NAME = "image.analyze"
PROVIDERS = ("openai",)
MAX_BRANDS = 50
# Streamed text is forwarded in pieces at most this often or this long, so a long reply is a few
# dozen stream entries, not thousands of Redis writes.
DELTA_INTERVAL_S = 0.1
DELTA_CHARS = 200


Brand = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]


class AnalyzeInput(BaseModel):
    """The local analysis always; a provider adds what a vision model sees."""

    model_config = REQUEST
    provider: Annotated[str, OneOf(PROVIDERS)] | None = None
    model: Annotated[str | None, Field(min_length=1, description="the provider's model")] = None
    known_brands: Annotated[list[Brand], Field(max_length=MAX_BRANDS)] | None = None


def parse_input(raw: AnalyzeInput, settings: Settings) -> dict[str, Any]:
    brands = sorted({brand.strip() for brand in raw.known_brands or ()})
    model = settings.providers.openai_vision_model if raw.model is None else raw.model
    return {"provider": raw.provider, "model": model, "known_brands": brands}


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    max_pixels = ctx.settings.limits.max_image_pixels
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
    prepare = (image, settings.providers.vision_max_side, settings.limits.max_image_pixels)
    jpeg = await ctx.decode(
        partial(vision.prepare_bytes, *prepare), partial(vision.prepare_image, *prepare)
    )
    key = _cache_key(jpeg, model, brands)

    async def cached() -> dict[str, Any] | None:
        entry = await ctx.redis.get(key)
        return None if entry is None else dict(json.loads(entry))

    async def ask() -> dict[str, Any]:
        return await _ask(jpeg, key, params, ctx)

    # Identical photos in flight at once (a batch of copies) are asked about once.
    flight = SingleFlight(ctx.redis, KEYS.flight(key), settings.jobs.flight_lease_s)
    answer, asked = await flight.run(cached, ask)
    return {
        "attributes": answer["attributes"],
        "provider": answer["provider"] | {"cached": not asked},
    }


async def _ask(jpeg: bytes, key: str, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """The model's answer, cached under `key` for every job that asks the same."""
    settings, model, brands = ctx.settings, params["model"], params["known_brands"]
    request = vision.chat_request(model, jpeg, brands)
    async with open_client(settings, ctx.redis, model, ctx.http) as client:
        if settings.providers.stream:
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
    answer = {"attributes": attributes, "provider": provider}
    await ctx.redis.set(
        key, json.dumps(answer), px=int(settings.providers.vision_cache_ttl_s * 1000)
    )
    return answer


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
    return KEYS.vision_answer(digest, versions, model, brands_digest)
