"""`image.generate`: an image from a prompt, from an OpenAI-compatible images endpoint."""

from __future__ import annotations

from typing import Any

from service import imaging
from service.config import Settings
from service.errors import InvalidInput
from service.fetch import fetch_image
from service.jobs import Job
from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError
from service.providers.openai import decode_b64_image, open_client
from service.storage import Storage, StorageUnavailable, job_file_key
from service.tasks.context import TaskContext, inspect_image
from service.tasks.kept_images import KEEP_S, Generation, KeptImages
from service.tasks.transform import stored_image_schema
from service.unknown_fields import refuse_unknown_fields

NAME = "image.generate"
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_IMAGES = 4
_FIELDS = frozenset("prompt negative_prompt model steps guidance_scale width height seed n".split())


def parse_input(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    refuse_unknown_fields(raw, _FIELDS, "input")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt must be a non-empty string", field="input.prompt")
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidInput(
            f"prompt must be at most {settings.max_prompt_chars} characters", field="input.prompt"
        )
    negative = raw.get("negative_prompt")
    if negative is not None and (
        not isinstance(negative, str) or len(negative) > settings.max_prompt_chars
    ):
        raise InvalidInput(
            f"negative_prompt must be a string of at most {settings.max_prompt_chars} characters",
            field="input.negative_prompt",
        )
    model = raw.get("model", settings.openai_image_model)
    if not isinstance(model, str) or not model:
        raise InvalidInput("model must be a model name", field="input.model")
    return {
        "prompt": prompt,
        "negative_prompt": negative,
        "steps": _int(raw, "steps", 50, 1, MAX_STEPS),
        "guidance_scale": _guidance(raw.get("guidance_scale", 7.5)),
        "width": _side(raw, "width", settings.max_generate_side),
        "height": _side(raw, "height", settings.max_generate_side),
        "seed": _int(raw, "seed", None, 0, 2**32 - 1),
        "n": _int(raw, "n", 1, 1, MAX_IMAGES),
        "model": model,
    }


def input_schema(settings: Settings) -> dict[str, Any]:
    """JSON Schema of what `parse_input` accepts; a side must also be a multiple of 8."""
    prompt = {"type": "string", "maxLength": settings.max_prompt_chars}
    side = {"type": "integer", "minimum": 64, "maximum": settings.max_generate_side}
    properties = {
        "prompt": {**prompt, "minLength": 1, "pattern": "\\S"},
        "negative_prompt": {**prompt, "type": ["string", "null"]},
        "steps": {"type": "integer", "minimum": 1, "maximum": MAX_STEPS, "default": 50},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": MAX_GUIDANCE},
        "width": {**side, "multipleOf": 8, "default": 1024},
        "height": {**side, "multipleOf": 8, "default": 1024},
        "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES, "default": 1},
        "model": {"type": "string", "minLength": 1, "default": settings.openai_image_model},
    }
    assert properties.keys() == _FIELDS, "describe every input field"
    return {
        "type": "object",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
    }


def output_schema() -> dict[str, Any]:
    """JSON Schema of what `run` returns, as callers see it."""
    provider = {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "latency_ms": {"type": "number"},
            "attempts": {"type": "integer"},
        },
        "required": ["model", "latency_ms", "attempts"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "images": {"type": "array", "items": stored_image_schema()},
            "provider": provider,
        },
        "required": ["images", "provider"],
        "additionalProperties": False,
    }


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
    async with open_client(ctx.settings, ctx.redis, params["model"], ctx.http) as client:
        reply, usage = await client.post_json("/v1/images/generations", request)
    images = [await _image(item, ctx.settings) for item in _data(reply)]
    provider = {
        "model": params["model"],
        "latency_ms": round(usage.latency_ms, 1),
        "attempts": usage.attempts,
    }
    return Generation(images, provider)


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
            settings.allow_private_networks,
            max_bytes=settings.max_image_bytes,
            connect_timeout_s=settings.webhook_connect_timeout_s,
            deadline_s=settings.image_fetch_timeout_s,
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
    key = job_file_key(job.client_id, job.id, job.created_at, f"image-{index}.{extension}")
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


def _int(raw: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    # An explicit null asks for the default, as leaving the field out does.
    value = raw.get(name)
    if value is None:
        value = default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{name} must be a whole number from {low} to {high}", field=f"input.{name}"
        )
    return value


def _side(raw: dict[str, Any], name: str, high: int) -> int:
    value = _int(raw, name, 1024, 64, high)
    assert value is not None  # it has a default
    if value % 8:
        raise InvalidInput(f"{name} must be a multiple of 8", field=f"input.{name}")
    return value


def _guidance(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_GUIDANCE
    ):
        raise InvalidInput(
            f"guidance_scale must be a number from 0 to {MAX_GUIDANCE:g}",
            field="input.guidance_scale",
        )
    return float(value)
