"""`image.analyze`: the local analysis always; with a `provider` ("anthropic" or "openai"), also
the attributes a vision model sees, cached by (image, prompt version, provider, models,
everything the caller asked)."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Any

from service.clients.brand_lists import BrandLists
from service.errors import JobFailure
from service.imaging import analysis
from service.jobs.model import Job
from service.keys import KEYS
from service.providers import attribute_schema, vision
from service.providers.brand_match import BrandIndex
from service.tasks.analyze_input import AnalyzeInput, parse_input
from service.tasks.context import TaskContext
from service.tasks.single_flight import SingleFlight
from service.tasks.streamed_text import Deltas

NAME = "image.analyze"
__all__ = ["NAME", "AnalyzeInput", "parse_input", "run"]


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    max_pixels = ctx.settings.limits.max_image_pixels
    result = await ctx.decode(
        partial(analysis.decode_bytes, image, max_pixels),
        partial(analysis.analyze, image, max_pixels),
    )
    output: dict[str, Any] = {"analysis": result}
    if job.input.get("provider") is not None:
        output.update(await _attributes(image, job, ctx))
    return output


async def _attributes(image: bytes, job: Job, ctx: TaskContext) -> dict[str, Any]:
    settings, params = ctx.settings, job.input
    brands, brands_version = await _brands(job, ctx)
    # Another decode of the photo: admitted against the budget as the analysis was.
    prepare = (image, settings.providers.vision_max_side, settings.limits.max_image_pixels)
    jpeg = await ctx.decode(
        partial(vision.prepare_bytes, *prepare), partial(vision.prepare_image, *prepare)
    )
    key = _cache_key(jpeg, params, brands_version)

    async def cached() -> dict[str, Any] | None:
        entry = await ctx.redis.get(key)
        return None if entry is None else dict(json.loads(entry))

    async def ask() -> dict[str, Any]:
        return await _ask(jpeg, key, params, brands, ctx)

    # Identical photos in flight at once (a batch of copies) are asked about once.
    flight = SingleFlight(ctx.redis, KEYS.flight(key), settings.jobs.flight_lease_s)
    answer, asked = await flight.run(cached, ask)
    return {
        "attributes": answer["attributes"],
        "provider": answer["provider"] | {"cached": not asked},
    }


async def _brands(job: Job, ctx: TaskContext) -> tuple[BrandIndex, str | None]:
    """The brands to match logos against, and the stored list's version if one is named."""
    name = job.input.get("brand_list")
    if not name:
        return BrandIndex(job.input.get("known_brands", [])), None
    stored = await BrandLists(ctx.redis).get(job.client_id, name)
    if stored is None:
        raise JobFailure(f"there is no brand list {name!r}", code="BRAND_LIST_NOT_FOUND")
    return BrandIndex(stored.brands), stored.version


async def _ask(
    jpeg: bytes, key: str, params: dict[str, Any], brands: BrandIndex, ctx: TaskContext
) -> dict[str, Any]:
    """The model's answer, cached under `key` for every job that asks the same."""
    settings = ctx.settings
    request = vision.analysis_request(jpeg, params)
    calls = ctx.providers()
    provider = params["provider"]
    if settings.providers.stream:
        deltas = Deltas(ctx.emit)
        reply = await calls.chat(provider, _models(params), request, deltas.add)
        await deltas.flush()
    else:
        reply = await calls.chat(provider, _models(params), request)
    attributes = vision.parse_reply(reply.text, params, brands)
    call = reply.as_output() | {"prompt_version": vision.PROMPT_VERSION}
    answer = {"attributes": attributes, "provider": call}
    await ctx.redis.set(
        key, json.dumps(answer), px=int(settings.providers.vision_cache_ttl_s * 1000)
    )
    return answer


def _models(params: dict[str, Any]) -> list[str]:
    # Jobs queued before model lists existed hold one `model`.
    return list(params.get("models") or [params["model"]])


def _cache_key(jpeg: bytes, params: dict[str, Any], brands_version: str | None) -> str:
    # The same photo, asked the same way of the same models, is not paid for twice.
    digest = hashlib.sha256(jpeg).hexdigest()
    asked = {
        "instructions": params.get("instructions"),
        "language": params.get("language"),
        "max_tokens": params.get("max_tokens"),
        "attributes": attribute_schema.schema_digest(params.get("attributes")),
        "known_brands": params.get("known_brands", []),
        "brand_list": brands_version,
    }
    prompt_digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:16]
    versions = f"{vision.PROMPT_VERSION}:{vision.PREPARATION_VERSION}"
    models = f"{params['provider']}/{','.join(_models(params))}"
    return KEYS.vision_answer(digest, versions, models, prompt_digest)
