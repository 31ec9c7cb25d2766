"""`image.analyze`: colours, exposure, sharpness, noise, quality and perceptual hashes, locally."""

from __future__ import annotations

import asyncio
from typing import Any

from service import analysis, imaging
from service.config import Settings
from service.errors import InvalidInput, JobFailure
from service.jobs import Job
from service.tasks.context import TaskContext

NAME = "image.analyze"
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
_FIELDS = frozenset({"provider"})


def parse_input(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise InvalidInput(f"unknown input field: {unknown[0]}", field=f"input.{unknown[0]}")
    if raw.get("provider") is not None:
        # The vision-provider analysis is a later step; refuse now rather than ignore the ask.
        raise InvalidInput(
            "provider-backed analysis is not available yet",
            code=PROVIDER_UNAVAILABLE,
            field="input.provider",
        )
    return {}


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    try:
        # Pillow releases the GIL while decoding and filtering; the event loop stays free.
        result = await asyncio.to_thread(analysis.analyze, image, ctx.settings.max_image_pixels)
    except imaging.ImageRejected as exc:
        raise JobFailure(str(exc), code=exc.code) from exc
    return {"analysis": result}
