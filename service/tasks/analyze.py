"""`image.analyze`: the local analysis always; with `provider: "openai"`, also the attributes a
vision model sees, cached by (image, prompt version, model, everything the caller asked)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from service.clients.brand_lists import BrandLists
from service.errors import JobFailure
from service.imaging import analysis
from service.jobs.model import Job
from service.keys import KEYS
from service.providers import attribute_schema, vision
from service.providers.brand_match import BrandIndex
from service.providers.chat import ChatRequest, ImagePart
from service.providers.openai import open_client
from service.tasks.analyze_input import AnalyzeInput, parse_input
from service.tasks.context import TaskContext
from service.tasks.single_flight import SingleFlight

NAME = "image.analyze"
__all__ = ["NAME", "AnalyzeInput", "parse_input", "run"]
# Streamed text is forwarded in pieces at most this often or this long, so a long reply is a few
# dozen stream entries, not thousands of Redis writes.
DELTA_INTERVAL_S = 0.1
DELTA_CHARS = 200


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    max_pixels = ctx.settings.limits.max_image_pixels
    result = await ctx.decode(
        partial(analysis.decode_bytes, image, max_pixels),
        partial(analysis.analyze, image, max_pixels),
    )
    output: dict[str, Any] = {"analysis": result}
    if job.input.get("provider") == "openai":
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
    settings, model = ctx.settings, params["model"]
    request = openai_body(model, vision.analysis_request(jpeg, params))
    async with open_client(settings, ctx.redis, model, ctx.http) as client:
        if settings.providers.stream:
            deltas = Deltas(ctx.emit)
            reply, usage = await client.stream_chat(request, deltas.add)
            await deltas.flush()
        else:
            reply, usage = await client.post_json("/v1/chat/completions", request)
    attributes = vision.parse_reply(vision.reply_text(reply), params, brands)
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


def openai_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """Today's OpenAI chat body for `request`, until the call layer takes a ChatRequest. The
    system text opens the user's message, as the whole prompt did before there was one."""
    content: list[dict[str, Any]] = []
    system = request.system
    for part in request.messages[0].parts:
        if isinstance(part, ImagePart):
            url = f"data:{part.media_type};base64," + base64.b64encode(part.data).decode()
            content.append({"type": "image_url", "image_url": {"url": url}})
        else:
            text = part.text if system is None else f"{system}\n\n{part.text}"
            content.append({"type": "text", "text": text})
            system = None
    schema = request.json_schema
    if schema is not None and attribute_schema.allows_strict(schema):
        json_schema = {"name": "attributes", "schema": schema, "strict": True}
        response_format: dict[str, Any] = {"type": "json_schema", "json_schema": json_schema}
    else:
        response_format = {"type": "json_object"}
    return {
        "model": model,
        "max_tokens": request.max_tokens,
        "response_format": response_format,
        "messages": [{"role": "user", "content": content}],
    }


def _cache_key(jpeg: bytes, params: dict[str, Any], brands_version: str | None) -> str:
    # The same photo, asked the same way of the same model, is not paid for twice.
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
    return KEYS.vision_answer(digest, versions, params["model"], prompt_digest)
