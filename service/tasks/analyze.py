"""`image.analyze`: the local analysis always; with a `provider` ("anthropic" or "openai"), also
the e-commerce attributes a vision model sees, cached by (image, prompt version, provider,
models, brands)."""

from __future__ import annotations

import hashlib
import json
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
from service.tasks.provider_choice import PROVIDERS, Models, default_model, model_list
from service.tasks.single_flight import SingleFlight
from service.tasks.streamed_text import Deltas

NAME = "image.analyze"
MAX_BRANDS = 50


Brand = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]


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


def _models(params: dict[str, Any]) -> list[str]:
    # Jobs queued before model lists existed hold one `model`.
    return list(params.get("models") or [params["model"]])


def _cache_key(jpeg: bytes, provider: str, models: list[str], brands: list[str]) -> str:
    # The same photo, asked the same way of the same models, is not paid for twice.
    digest = hashlib.sha256(jpeg).hexdigest()
    brands_digest = hashlib.sha256("\n".join(brands).encode()).hexdigest()[:16]
    versions = f"{vision.PROMPT_VERSION}:{vision.PREPARATION_VERSION}"
    return KEYS.vision_answer(digest, versions, f"{provider}/{','.join(models)}", brands_digest)
