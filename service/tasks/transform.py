"""`image.transform`: one image in, one or more named outputs (`variants`) out.

Without `variants`, the top-level fields describe one output named `default`. With them, the
top-level fields are defaults that each variant overrides.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, Field

from service import imaging
from service.config import Settings
from service.errors import InvalidInput
from service.jobs.model import Job
from service.shapes.fields import Bound, OneOf
from service.shapes.validation import REQUEST
from service.storage import Storage
from service.tasks.context import TaskContext
from service.tasks.output_keys import named_output_key

NAME = "image.transform"
MAX_VARIANTS = 10

# Variant names become file names, so they stay plain.
VARIANT_NAME = "^[A-Za-z0-9_-]{1,40}$"
_MAX_BYTES_LIMIT = 1 << 30

Side = Annotated[int, Field(ge=1), Bound("limits.max_output_side")]
Mode = Annotated[str, OneOf(imaging.MODES)]


class FocalPoint(BaseModel):
    """Where the subject is, as fractions of the width and height: kept in view when cropping."""

    model_config = REQUEST
    x: Annotated[float, Field(ge=0, le=1)]
    y: Annotated[float, Field(ge=0, le=1)]


class Box(BaseModel):
    """A rectangle of the source image, in pixels."""

    model_config = REQUEST
    left: Annotated[int, Field(ge=0), Bound("limits.max_image_pixels")]
    top: Annotated[int, Field(ge=0), Bound("limits.max_image_pixels")]
    width: Annotated[int, Field(ge=1), Bound("limits.max_image_pixels")]
    height: Annotated[int, Field(ge=1), Bound("limits.max_image_pixels")]


class TransformVariant(BaseModel):
    """One output image. Cross-field rules (fill needs width and height, progressive is jpeg
    only...) are checked after it, each answering 422 with its field."""

    model_config = REQUEST
    mode: Mode = "fit"
    fit: Annotated[Mode | None, Field(deprecated=True, description="the name of `mode` before")] = (
        None
    )
    width: Side | None = None
    height: Side | None = None
    max_side: Side | None = None
    gravity: Annotated[str, OneOf(imaging.GRAVITIES)] = "center"
    focal_point: FocalPoint | None = None
    box: Box | None = None
    background: Annotated[str, Field(pattern="^#[0-9a-fA-F]{6}$")] = "#ffffff"
    upscale: bool = False
    format: Annotated[str, OneOf(imaging.OUTPUT_FORMATS)] = "jpeg"
    quality: Annotated[int, Field(ge=1, le=100)] | None = 85
    max_bytes: Annotated[int, Field(ge=1, le=_MAX_BYTES_LIMIT)] | None = None
    progressive: bool = False
    lossless: bool = False
    effort: (
        Annotated[int, Field(ge=imaging.WEBP_EFFORTS[0], le=imaging.WEBP_EFFORTS[-1])] | None
    ) = None


_OUTPUT_FIELDS = frozenset(TransformVariant.model_fields)


class TransformInput(TransformVariant):
    """Without `variants`, one output named `default`; with them, the fields above are defaults
    each variant overrides."""

    variants: (
        Annotated[
            dict[Annotated[str, Field(pattern=VARIANT_NAME)], TransformVariant],
            Field(min_length=1, max_length=MAX_VARIANTS),
        ]
        | None
    ) = None


def parse_input(raw: TransformInput, settings: Settings) -> dict[str, Any]:
    defaults = _given(raw)
    parsed = _parse_output(defaults, settings, "input")
    if raw.variants is None:
        return parsed
    return {
        "variants": {
            name: _parse_output({**defaults, **_given(variant)}, settings, f"input.variants.{name}")
            for name, variant in raw.variants.items()
        }
    }


def _given(output: TransformVariant) -> dict[str, Any]:
    """The output fields the caller sent (a submission's input model adds `image` beside them),
    as they are: read off the model, cheaper than dumping it per output."""
    return {name: getattr(output, name) for name in output.model_fields_set & _OUTPUT_FIELDS}


def outputs(params: dict[str, Any]) -> list[str]:
    return list(params.get("variants") or ["default"])


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    outputs: dict[str, dict[str, Any]] = job.input.get("variants") or {"default": job.input}
    specs = {name: _output_spec(params) for name, params in outputs.items()}
    image_args = (image, specs, ctx.settings.limits.max_image_pixels)
    max_side = ctx.settings.limits.max_output_side
    encoded = await ctx.decode(
        partial(imaging.render_bytes, *image_args, max_side=max_side),
        partial(imaging.render, *image_args, max_side=max_side),
    )
    images = [
        await _store(job, ctx.storage, name, specs[name].format, result)
        for name, result in encoded.items()
    ]
    return {"images": images}


async def _store(
    job: Job, storage: Storage, name: str, format_name: str, encoded: imaging.EncodedImage
) -> dict[str, Any]:
    key = named_output_key(storage, job, name, encoded.format.extension)
    await storage.put(key, encoded.data, media_type=encoded.format.media_type)
    return {
        "name": name,
        "key": key,
        "media_type": encoded.format.media_type,
        "format": format_name,
        "width": encoded.width,
        "height": encoded.height,
        "bytes": len(encoded.data),
    }


def _output_spec(params: dict[str, Any]) -> imaging.OutputSpec:
    # `.get` with defaults: jobs queued before a field existed still run.
    focal_point = params.get("focal_point")
    box = params.get("box")
    effort = params.get("effort")
    return imaging.OutputSpec(
        mode=params.get("mode", "fit"),
        width=params.get("width"),
        height=params.get("height"),
        max_side=params.get("max_side"),
        gravity=params.get("gravity", "center"),
        focal_point=(focal_point["x"], focal_point["y"]) if focal_point else None,
        box=(box["left"], box["top"], box["width"], box["height"]) if box else None,
        background=_rgb(params.get("background", "#ffffff")),
        upscale=params.get("upscale", False),
        format=params.get("format", "jpeg"),
        quality=params.get("quality", 85),
        max_bytes=params.get("max_bytes"),
        progressive=params.get("progressive", False),
        lossless=params.get("lossless", False),
        effort=imaging.DEFAULT_WEBP_EFFORT if effort is None else effort,
    )


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


# What the model cannot say: defaults filled in, and the rules across fields, each naming its
# field, e.g. `input.variants.thumb.width`.


def _parse_output(raw: dict[str, Any], settings: Settings, prefix: str) -> dict[str, Any]:
    output_format = raw.get("format", "jpeg")
    parsed = {
        "mode": raw["fit"] if "fit" in raw and "mode" not in raw else raw.get("mode", "fit"),
        "width": raw.get("width"),
        "height": raw.get("height"),
        "max_side": raw.get("max_side"),
        "gravity": raw.get("gravity", "center"),
        "focal_point": raw.get("focal_point"),
        "box": raw.get("box"),
        "background": raw.get("background", "#ffffff").lower(),
        "upscale": raw.get("upscale", False),
        "format": output_format,
        "quality": raw.get("quality") or 85,
        "max_bytes": raw.get("max_bytes"),
        "progressive": raw.get("progressive", False),
        "lossless": raw.get("lossless", False),
        "effort": raw.get("effort"),
    }
    if parsed["focal_point"] is not None:
        point = parsed["focal_point"]
        parsed["focal_point"] = {"x": float(point.x), "y": float(point.y)}
    if parsed["box"] is not None:
        parsed["box"] = parsed["box"].model_dump()
    _check_mode_fields(parsed, prefix)
    if output_format == "webp" and parsed["effort"] is None:
        # Recorded at acceptance, so the job shows the effort it was made with.
        budgeted = parsed["max_bytes"] is not None
        effort = settings.jobs.webp_effort
        parsed["effort"] = max(effort, imaging.BUDGET_WEBP_EFFORT) if budgeted else effort
    return parsed


def _check_mode_fields(parsed: dict[str, Any], prefix: str) -> None:
    mode = parsed["mode"]
    if mode in ("fill", "pad"):
        for name in ("width", "height"):
            if parsed[name] is None:
                raise InvalidInput(f"{mode} needs both width and height", field=f"{prefix}.{name}")
        if parsed["max_side"] is not None:
            raise InvalidInput(
                f"{mode} takes width and height, not max_side", field=f"{prefix}.max_side"
            )
    if mode == "crop" and parsed["box"] is None:
        raise InvalidInput("crop needs a box {left, top, width, height}", field=f"{prefix}.box")
    if parsed["progressive"] and parsed["format"] != "jpeg":
        raise InvalidInput("progressive applies to jpeg only", field=f"{prefix}.progressive")
    if parsed["lossless"] and parsed["format"] != "webp":
        raise InvalidInput("lossless applies to webp only", field=f"{prefix}.lossless")
    if parsed["effort"] is not None and parsed["format"] != "webp":
        raise InvalidInput("effort applies to webp only", field=f"{prefix}.effort")
