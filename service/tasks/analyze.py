"""`image.analyze`: the local analysis always; with a `provider` ("anthropic" or "openai"), also
the e-commerce attributes a vision model sees, cached by (image, prompt version, provider,
models, brands)."""

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
from service.shapes.fields import OneOf
from service.shapes.validation import REQUEST
from service.tasks.context import TaskContext
from service.tasks.single_flight import SingleFlight

NAME = "image.analyze"
PROVIDERS = ("anthropic", "openai")
MAX_BRANDS = 50
MAX_MODELS = 4
# Streamed text is forwarded in pieces at most this often or this long, so a long reply is a few
# dozen stream entries, not thousands of Redis writes.
DELTA_INTERVAL_S = 0.1
DELTA_CHARS = 200


Brand = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]
ModelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]
# One model, or several to fall back on in order (on a 404, an overload or repeated 5xx).
Models = Annotated[
    ModelName | Annotated[list[ModelName], Field(min_length=1, max_length=MAX_MODELS)],
    Field(description="the provider's model, or a list to fall back on in order"),
]


class AnalyzeInput(BaseModel):
    """The local analysis always; a provider adds what a vision model sees."""

    model_config = REQUEST
    provider: Annotated[str, OneOf(PROVIDERS)] | None = None
    model: Models | None = None
    known_brands: Annotated[list[Brand], Field(max_length=MAX_BRANDS)] | None = None


def parse_input(raw: AnalyzeInput, settings: Settings) -> dict[str, Any]:
    brands = sorted({brand.strip() for brand in raw.known_brands or ()})
    return {
        "provider": raw.provider,
        "models": model_list(raw.model, default_model(raw.provider, settings, "vision")),
        "known_brands": brands,
    }


def default_model(provider: str | None, settings: Settings, use: str) -> str:
    """The configured default model of `provider` for `use` ("vision" or "text")."""
    return str(getattr(settings.providers, f"{provider or 'openai'}_{use}_model"))


def model_list(given: str | list[str] | None, default: str) -> list[str]:
    if given is None:
        return [default]
    return list(dict.fromkeys([given] if isinstance(given, str) else given))


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    max_pixels = ctx.settings.limits.max_image_pixels
    result = await ctx.decode(
        partial(analysis.decode_bytes, image, max_pixels),
        partial(analysis.analyze, image, max_pixels),
    )
    output: dict[str, Any] = {"analysis": result}
    if job.input.get("provider") is not None:
        output.update(await _attributes(image, job.input, ctx))
    return output


async def _attributes(image: bytes, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    settings, brands = ctx.settings, params["known_brands"]
    # Another decode of the photo: admitted against the budget as the analysis was.
    prepare = (image, settings.providers.vision_max_side, settings.limits.max_image_pixels)
    jpeg = await ctx.decode(
        partial(vision.prepare_bytes, *prepare), partial(vision.prepare_image, *prepare)
    )
    key = _cache_key(jpeg, params["provider"], _models(params), brands)

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
    settings, brands = ctx.settings, params["known_brands"]
    request = vision.analysis_request(jpeg, brands)
    calls = ctx.providers()
    provider = params["provider"]
    if settings.providers.stream:
        deltas = Deltas(ctx.emit)
        reply = await calls.chat(provider, _models(params), request, deltas.add)
        await deltas.flush()
    else:
        reply = await calls.chat(provider, _models(params), request)
    attributes = vision.parse_attributes(reply.text, brands)
    call = reply.as_output() | {"prompt_version": vision.PROMPT_VERSION}
    answer = {"attributes": attributes, "provider": call}
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


def _models(params: dict[str, Any]) -> list[str]:
    # Jobs queued before model lists existed hold one `model`.
    return list(params.get("models") or [params["model"]])


def _cache_key(jpeg: bytes, provider: str, models: list[str], brands: list[str]) -> str:
    # The same photo, asked the same way of the same models, is not paid for twice.
    digest = hashlib.sha256(jpeg).hexdigest()
    brands_digest = hashlib.sha256("\n".join(brands).encode()).hexdigest()[:16]
    versions = f"{vision.PROMPT_VERSION}:{vision.PREPARATION_VERSION}"
    return KEYS.vision_answer(digest, versions, f"{provider}/{','.join(models)}", brands_digest)
