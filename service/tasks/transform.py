"""`image.transform`: one image in, one or more named outputs (`variants`) out.

Without `variants`, the top-level fields describe one output named `default`. With them, the
top-level fields are defaults that each variant overrides.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import partial
from typing import Any

from service import imaging
from service.config import Settings
from service.errors import InvalidInput
from service.jobs import Job
from service.storage import Storage, job_file_key
from service.tasks.context import TaskContext
from service.unknown_fields import refuse_unknown_fields

NAME = "image.transform"
MAX_VARIANTS = 10

_OUTPUT_FIELDS = frozenset(
    {
        "mode",
        "fit",  # the field's name before `mode`, still accepted
        "width",
        "height",
        "max_side",
        "gravity",
        "focal_point",
        "box",
        "background",
        "upscale",
        "format",
        "quality",
        "max_bytes",
        "progressive",
        "lossless",
        "effort",
    }
)
_BOX_FIELDS = ("left", "top", "width", "height")
# Variant names become file names, so they stay plain.
_VARIANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_MAX_BYTES_LIMIT = 1 << 30


def parse_input(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    defaults = {key: value for key, value in raw.items() if key != "variants"}
    refuse_unknown_fields(defaults, _OUTPUT_FIELDS, "input")
    parsed = _parse_output(defaults, settings, "input")
    if "variants" not in raw:
        return parsed
    return {"variants": _parse_variants(raw["variants"], defaults, settings)}


def input_schema(settings: Settings) -> dict[str, Any]:
    """JSON Schema of what `parse_input` accepts; cross-field rules (fill needs width and height,
    progressive is jpeg only...) are beyond it and answer 422 with their field."""
    output = _output_schema(settings)
    variants = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": MAX_VARIANTS,
        "propertyNames": {"pattern": f"^{_VARIANT_NAME.pattern}$"},
        "additionalProperties": output,
    }
    return {**output, "properties": {**output["properties"], "variants": variants}}


def _output_schema(settings: Settings) -> dict[str, Any]:
    side = {"type": ["integer", "null"], "minimum": 1, "maximum": settings.max_output_side}
    flag = {"type": "boolean"}
    pixels = settings.max_image_pixels
    box = {name: {"type": "integer", "minimum": 0, "maximum": pixels} for name in _BOX_FIELDS}
    box["width"] = box["height"] = {"type": "integer", "minimum": 1, "maximum": pixels}
    unit = {"type": "number", "minimum": 0, "maximum": 1}
    properties: dict[str, Any] = {
        "mode": {"enum": sorted(imaging.MODES), "default": "fit"},
        "fit": {"enum": sorted(imaging.MODES), "deprecated": True},
        "width": side,
        "height": side,
        "max_side": side,
        "gravity": {"enum": sorted(imaging.GRAVITIES), "default": "center"},
        "focal_point": _nullable_object({"x": unit, "y": unit}),
        "box": _nullable_object(box),
        "background": {"type": "string", "pattern": f"^{_COLOUR.pattern}$", "default": "#ffffff"},
        "upscale": flag,
        "format": {"enum": sorted(imaging.OUTPUT_FORMATS), "default": "jpeg"},
        "quality": {"type": ["integer", "null"], "minimum": 1, "maximum": 100, "default": 85},
        "max_bytes": {"type": ["integer", "null"], "minimum": 1, "maximum": _MAX_BYTES_LIMIT},
        "progressive": flag,
        "lossless": flag,
        "effort": {
            "type": ["integer", "null"],
            "minimum": imaging.WEBP_EFFORTS[0],
            "maximum": imaging.WEBP_EFFORTS[-1],
            "default": settings.webp_effort,
        },
    }
    assert properties.keys() == _OUTPUT_FIELDS, "describe every output field"
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _nullable_object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def output_schema() -> dict[str, Any]:
    """JSON Schema of what `run` returns, as callers see it (`views.job_view` adds `url`)."""
    return {
        "type": "object",
        "properties": {"images": {"type": "array", "items": stored_image_schema()}},
        "required": ["images"],
        "additionalProperties": False,
    }


def stored_image_schema() -> dict[str, Any]:
    """One image `_store` records (and `generate._store`), its key swapped for a signed `url`."""
    properties: dict[str, Any] = {
        "name": {"type": "string"},
        "media_type": {"type": "string"},
        "format": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "bytes": {"type": "integer"},
        "url": {"type": "string", "format": "uri"},
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    outputs: dict[str, dict[str, Any]] = job.input.get("variants") or {"default": job.input}
    specs = {name: _output_spec(params) for name, params in outputs.items()}
    image_args = (image, specs, ctx.settings.max_image_pixels)
    max_side = ctx.settings.max_output_side
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
    key = job_file_key(job.client_id, job.id, job.created_at, f"{name}.{encoded.format.extension}")
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


# Validation: every error names its field, e.g. `input.variants.thumb.width`.


def _parse_variants(
    variants: Any, defaults: dict[str, Any], settings: Settings
) -> dict[str, dict[str, Any]]:
    if not isinstance(variants, dict) or not variants:
        raise InvalidInput("variants must be an object of named outputs", field="input.variants")
    if len(variants) > MAX_VARIANTS:
        raise InvalidInput(
            f"at most {MAX_VARIANTS} variants per job, not {len(variants)}", field="input.variants"
        )
    parsed = {}
    for name, variant in variants.items():
        prefix = f"input.variants.{name}"
        if not _VARIANT_NAME.fullmatch(name):
            raise InvalidInput("variant names are 1-40 letters, digits, '-' or '_'", field=prefix)
        if not isinstance(variant, dict):
            raise InvalidInput("a variant is an object of output fields", field=prefix)
        refuse_unknown_fields(variant, _OUTPUT_FIELDS, prefix)
        parsed[name] = _parse_output({**defaults, **variant}, settings, prefix)
    return parsed


def _parse_output(raw: dict[str, Any], settings: Settings, prefix: str) -> dict[str, Any]:
    mode_field = "fit" if "fit" in raw and "mode" not in raw else "mode"
    mode = _choice(raw, mode_field, imaging.MODES, "fit", prefix)
    output_format = _choice(raw, "format", imaging.OUTPUT_FORMATS, "jpeg", prefix)
    side = settings.max_output_side
    parsed = {
        "mode": mode,
        "width": _optional_int(raw, "width", 1, side, prefix),
        "height": _optional_int(raw, "height", 1, side, prefix),
        "max_side": _optional_int(raw, "max_side", 1, side, prefix),
        "gravity": _choice(raw, "gravity", imaging.GRAVITIES, "center", prefix),
        "focal_point": _focal_point(raw.get("focal_point"), f"{prefix}.focal_point"),
        "box": _box(raw.get("box"), settings.max_image_pixels, f"{prefix}.box"),
        "background": _colour(raw.get("background", "#ffffff"), f"{prefix}.background"),
        "upscale": _flag(raw, "upscale", prefix),
        "format": output_format,
        "quality": _optional_int(raw, "quality", 1, 100, prefix) or 85,
        "max_bytes": _optional_int(raw, "max_bytes", 1, _MAX_BYTES_LIMIT, prefix),
        "progressive": _flag(raw, "progressive", prefix),
        "lossless": _flag(raw, "lossless", prefix),
        "effort": _optional_int(
            raw, "effort", imaging.WEBP_EFFORTS[0], imaging.WEBP_EFFORTS[-1], prefix
        ),
    }
    _check_mode_fields(parsed, prefix)
    if output_format == "webp" and parsed["effort"] is None:
        # Recorded at acceptance, so the job shows the effort it was made with.
        budgeted = parsed["max_bytes"] is not None
        effort = settings.webp_effort
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


def _choice(
    raw: dict[str, Any], name: str, allowed: Collection[str], default: str, prefix: str
) -> str:
    value = raw.get(name, default)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(
            f"{name} must be one of: {', '.join(sorted(allowed))}", field=f"{prefix}.{name}"
        )
    return value


def _optional_int(raw: dict[str, Any], name: str, low: int, high: int, prefix: str) -> int | None:
    value = raw.get(name)
    return None if value is None else _whole_number(value, low, high, f"{prefix}.{name}")


def _whole_number(value: Any, low: int, high: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        name = field.rsplit(".", 1)[-1]
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}", field=field)
    return value


def _flag(raw: dict[str, Any], name: str, prefix: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", field=f"{prefix}.{name}")
    return value


def _focal_point(value: Any, field: str) -> dict[str, float] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        refuse_unknown_fields(value, ("x", "y"), field)
    if not isinstance(value, dict) or set(value) != {"x", "y"}:
        raise InvalidInput("focal_point must be {x, y}, each from 0 to 1", field=field)
    for axis in ("x", "y"):
        number = value[axis]
        if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= 1:
            raise InvalidInput(f"{axis} must be a number from 0 to 1", field=f"{field}.{axis}")
    return {"x": float(value["x"]), "y": float(value["y"])}


def _box(value: Any, max_pixels: int, field: str) -> dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        refuse_unknown_fields(value, _BOX_FIELDS, field)
    if not isinstance(value, dict) or set(value) != set(_BOX_FIELDS):
        raise InvalidInput("box must be {left, top, width, height} in pixels", field=field)
    return {
        name: _whole_number(
            value[name], int(name in ("width", "height")), max_pixels, f"{field}.{name}"
        )
        for name in _BOX_FIELDS
    }


def _colour(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _COLOUR.fullmatch(value):
        raise InvalidInput('background must be a colour like "#ffffff"', field=field)
    return value.lower()
