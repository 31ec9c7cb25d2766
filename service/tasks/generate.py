"""`image.generate`: an image from a prompt, from an OpenAI-compatible images endpoint."""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import BaseModel, Field

from service import imaging
from service.config import Settings
from service.fetch import fetch_image
from service.jobs.model import Job
from service.providers.chat import ChatReply
from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError
from service.providers.openai import decode_b64_image, post, usage
from service.providers.prices import cost_usd
from service.shapes.fields import Bound
from service.shapes.validation import REQUEST
from service.storage import Storage, StorageUnavailable
from service.tasks.context import TaskContext, inspect_image
from service.tasks.kept_images import KEEP_S, Generation, KeptImages
from service.tasks.output_keys import named_output_key

NAME = "image.generate"
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_IMAGES = 4


# Constraints before the bound: after a validator of its own, pydantic checks them in Python.
PromptLength = Bound("limits.max_prompt_chars", "maxLength")
# A side of the image: a multiple of 8, as image models want.
GenerateSide = Annotated[int, Field(ge=64, multiple_of=8), Bound("limits.max_generate_side")]


class GenerateInput(BaseModel):
    """What to draw and how; an explicit null asks for a field's default."""

    model_config = REQUEST
    prompt: Annotated[str, Field(min_length=1, pattern=r"\S"), PromptLength]
    negative_prompt: Annotated[str, PromptLength] | None = None
    model: Annotated[str | None, Field(min_length=1, description="the provider's model")] = None
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = 50
    guidance_scale: Annotated[float, Field(ge=0, le=MAX_GUIDANCE)] = 7.5
    width: GenerateSide | None = 1024
    height: GenerateSide | None = 1024
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES)] | None = 1


def parse_input(raw: GenerateInput, settings: Settings) -> dict[str, Any]:
    return {
        "prompt": raw.prompt,
        "negative_prompt": raw.negative_prompt,
        "steps": 50 if raw.steps is None else raw.steps,
        "guidance_scale": float(raw.guidance_scale),
        "width": 1024 if raw.width is None else raw.width,
        "height": 1024 if raw.height is None else raw.height,
        "seed": raw.seed,
        "n": 1 if raw.n is None else raw.n,
        "model": settings.providers.openai_image_model if raw.model is None else raw.model,
    }


def outputs(params: dict[str, Any]) -> list[str]:
    return [f"image-{index}" for index in range(params["n"])]


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    """`image` is empty: this job type takes none."""
    request = _request(job.input)
    kept = KeptImages(ctx.redis, job.client_id, request)
    found = await kept.find()
    generation = found or await _generate(job.input, request, ctx)
    try:
        outputs = [
            await _store(job, i, data, ctx.storage, ctx.settings)
            for i, data in enumerate(generation.images)
        ]
    except StorageUnavailable as exc:
        await kept.keep(generation)
        message = f"{exc.message}; the generated images are kept for {KEEP_S // 3600} h, so the "
        message += "same job submitted again stores them without generating them again"
        raise StorageUnavailable(message, operation=exc.operation) from exc
    if found is not None:
        await kept.forget()
    return {"images": outputs, "provider": generation.provider}


async def _generate(
    params: dict[str, Any], request: dict[str, Any], ctx: TaskContext
) -> Generation:
    started, model = time.perf_counter(), params["model"]
    reply, answered = await ctx.providers().images(
        model, lambda endpoint: post(ctx.http, endpoint, "/v1/images/generations", json=request)
    )
    images = [await _image(item, ctx.settings) for item in _data(reply)]
    used = usage(reply)
    call = ChatReply(
        "",
        "openai",
        model,
        used,
        cost_usd(ctx.settings, "openai", model, used),
        (time.perf_counter() - started) * 1000,
        answered.attempts,
        key_hint=answered.key.hint,
    )
    return Generation(images, call.as_output())


def _request(params: dict[str, Any]) -> dict[str, Any]:
    # OpenAI's own fields, plus the diffusion ones OpenAI-compatible image servers accept.
    body: dict[str, Any] = {
        "model": params["model"],
        "prompt": params["prompt"],
        "n": params["n"],
        "size": f"{params['width']}x{params['height']}",
        "response_format": "b64_json",
        "steps": params["steps"],
        "guidance_scale": params["guidance_scale"],
    }
    if params["negative_prompt"]:
        body["negative_prompt"] = params["negative_prompt"]
    if params["seed"] is not None:
        body["seed"] = params["seed"]
    return body


def _data(reply: dict[str, Any]) -> list[dict[str, Any]]:
    data = reply.get("data")
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise ProviderError(
            "the provider returned no images", code=PROVIDER_BAD_RESPONSE, retryable=False
        )
    return data


async def _image(item: dict[str, Any], settings: Settings) -> bytes:
    if "url" in item and "b64_json" not in item:
        return await fetch_image(
            str(item["url"]),
            settings.deliveries.allow_private_networks,
            max_bytes=settings.limits.max_image_bytes,
            connect_timeout_s=settings.deliveries.connect_timeout_s,
            deadline_s=settings.limits.image_fetch_timeout_s,
        )
    return decode_b64_image(item.get("b64_json"))


async def _store(
    job: Job, index: int, data: bytes, storage: Storage, settings: Settings
) -> dict[str, Any]:
    try:
        info = await inspect_image(data, settings)
    except imaging.ImageRejected as exc:
        raise ProviderError(
            f"the provider's image is unusable: {exc}", code=PROVIDER_BAD_RESPONSE, retryable=False
        ) from exc
    output = imaging.OUTPUT_FORMATS.get(info.format.lower())
    extension = output.extension if output else "bin"
    media_type = output.media_type if output else "application/octet-stream"
    key = named_output_key(storage, job, f"image-{index}", extension)
    await storage.put(key, data, media_type=media_type)
    return {
        "name": f"image-{index}",
        "key": key,
        "media_type": media_type,
        "format": info.format.lower(),
        "width": info.width,
        "height": info.height,
        "bytes": len(data),
    }
