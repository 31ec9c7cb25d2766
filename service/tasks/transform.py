"""`image.transform`: resize to fit and re-encode."""

from __future__ import annotations

import asyncio
from typing import Any

from service import imaging
from service.config import Settings
from service.errors import InvalidInput, JobFailure
from service.jobs import Job
from service.storage import LocalStorage, job_file_key

NAME = "image.transform"
_FITS = frozenset({"fit"})


def parse_input(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    fit = raw.get("fit", "fit")
    if fit not in _FITS:
        raise InvalidInput(f"fit must be one of: {', '.join(sorted(_FITS))}", field="input.fit")
    output_format = raw.get("format", "jpeg")
    if output_format not in imaging.OUTPUT_FORMATS:
        formats = ", ".join(imaging.OUTPUT_FORMATS)
        raise InvalidInput(f"format must be one of: {formats}", field="input.format")
    return {
        "fit": fit,
        "width": _optional_int(raw, "width", 1, settings.max_output_side),
        "height": _optional_int(raw, "height", 1, settings.max_output_side),
        "format": output_format,
        "quality": _optional_int(raw, "quality", 1, 100) or 85,
    }


async def run(job: Job, image: bytes, storage: LocalStorage, settings: Settings) -> dict[str, Any]:
    params = job.input
    spec = imaging.FitSpec(params["width"], params["height"], params["format"], params["quality"])
    try:
        # Pillow releases the GIL while decoding and resampling; the event loop stays free.
        encoded = await asyncio.to_thread(imaging.fit, image, spec, settings.max_image_pixels)
    except imaging.ImageRejected as exc:
        raise JobFailure(str(exc), code=exc.code) from exc
    key = job_file_key(job.client_id, job.id, job.created_at, f"default.{encoded.format.extension}")
    await storage.put(key, encoded.data)
    image_output = {
        "name": "default",
        "key": key,
        "media_type": encoded.format.media_type,
        "format": params["format"],
        "width": encoded.width,
        "height": encoded.height,
        "bytes": len(encoded.data),
    }
    return {"images": [image_output]}


def _optional_int(raw: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{name} must be a whole number from {low} to {high}", field=f"input.{name}"
        )
    return value
