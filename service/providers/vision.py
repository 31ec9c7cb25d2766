"""E-commerce attributes of a product photo from an OpenAI-compatible vision chat model.

The model is asked for JSON; its reply is parsed (code fences tolerated), checked against the
schema below, repaired where the intent is plain (a "true" string, a single tag, an out-of-range
confidence) and rejected with PROVIDER_BAD_RESPONSE where it is not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from service import imaging
from service.providers.chat import ChatRequest, ImagePart, Message, TextPart
from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError

# Part of the cache key: a reworded prompt must not be answered from an older prompt's cache.
PROMPT_VERSION = "ecommerce-v1"
# Part of the cache key too: answers about images prepared otherwise are not served. Until v2,
# transparent pixels went up black, and the model described the product on a black backdrop.
PREPARATION_VERSION = "v2"
# What the upload may weigh (OpenAI takes up to 20 MB; each MB is seconds of upload and decode).
MAX_UPLOAD_BYTES = 5_000_000
CONDITIONS = ("new", "used", "refurbished", "damaged", "unknown")
QUALITIES = ("high", "medium", "low")
MAX_TAGS = 20
# A product description's JSON is ~150–400 tokens; logos add ~40 each.
MAX_REPLY_TOKENS = 1500

_PROMPT = """You describe product photos for an online shop's catalogue.
Answer with one JSON object and nothing else, with exactly these keys:
"category" (string), "subcategory" (string or null),
"brand_detected" (string, or null unless a brand logo or name is clearly visible),
"dominant_colors" (list of colour names), "primary_material" (string or null),
"product_condition" (one of: new, used, refurbished, damaged, unknown),
"image_quality" (one of: high, medium, low), "has_text_overlay" (true or false),
"description" (one or two sentences), "tags" (up to 20 short strings)."""

_LOGO_PROMPT = """
Also add "logos": a list of the brands from this list whose logo is visible: {brands}.
Each item: {{"brand": one of those names, "confidence": 0..1,
"box": {{"x": 0..1, "y": 0..1, "width": 0..1, "height": 0..1}}}} (fractions of the image)."""

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def prepare_image(data: bytes, max_side: int, max_pixels: int) -> bytes:
    """Upright, at most `max_side` on its longest side, transparency on white, as a JPEG of at
    most MAX_UPLOAD_BYTES: fewer tokens, same product. Made as `image.transform` makes a JPEG."""
    side = _first_side(data, max_side, max_pixels)
    while True:
        # Quality steps down to fit first; only a photo that no quality fits is made smaller.
        try:
            return imaging.transform(data, _upload_spec(side), max_pixels).data
        except imaging.ImageRejected as exc:
            if exc.code != "OUTPUT_TOO_LARGE":
                raise
        side = side * 3 // 4


def prepare_bytes(data: bytes, max_side: int, max_pixels: int) -> int:
    """The most memory `prepare_image` holds at once, from the headers alone: its first try is
    its largest."""
    spec = _upload_spec(_first_side(data, max_side, max_pixels))
    return imaging.render_bytes(data, {"upload": spec}, max_pixels)


def _first_side(data: bytes, max_side: int, max_pixels: int) -> int:
    info = imaging.inspect(data, max_pixels)
    return min(max_side, max(info.width, info.height))


def _upload_spec(side: int) -> imaging.OutputSpec:
    return imaging.OutputSpec(max_side=side, format="jpeg", max_bytes=MAX_UPLOAD_BYTES)


def analysis_request(jpeg: bytes, known_brands: Sequence[str]) -> ChatRequest:
    prompt = _PROMPT
    if known_brands:
        prompt += _LOGO_PROMPT.format(brands=", ".join(known_brands))
    message = Message("user", (TextPart(prompt), ImagePart(jpeg, "image/jpeg")))
    return ChatRequest((message,), max_tokens=MAX_REPLY_TOKENS, json_reply=True)


def parse_attributes(text: str, known_brands: Sequence[str]) -> dict[str, Any]:
    """The validated attributes from the model's text."""
    fenced = _FENCE.match(text)
    try:
        raw = json.loads(fenced[1] if fenced else text)
    except ValueError as exc:
        raise _bad("the model's answer is not JSON") from exc
    if not isinstance(raw, dict):
        raise _bad("the model's answer is not a JSON object")
    attributes: dict[str, Any] = {
        "category": _text(raw, "category", required=True),
        "subcategory": _text(raw, "subcategory"),
        "brand_detected": _text(raw, "brand_detected"),
        "dominant_colors": _strings(raw, "dominant_colors", 10),
        "primary_material": _text(raw, "primary_material"),
        "product_condition": _choice(raw, "product_condition", CONDITIONS, "unknown"),
        "image_quality": _choice(raw, "image_quality", QUALITIES, None),
        "has_text_overlay": _flag(raw, "has_text_overlay"),
        "description": _text(raw, "description", required=True),
        "tags": _strings(raw, "tags", MAX_TAGS),
    }
    if known_brands:
        attributes["logos"] = _logos(raw.get("logos"), known_brands)
    return attributes


def _text(raw: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if isinstance(value, str) and value.strip() and value.strip().lower() not in ("null", "none"):
        return value.strip()
    if required:
        raise _bad(f"{key} is missing")
    return None


def _strings(raw: dict[str, Any], key: str, limit: int) -> list[str]:
    value = raw.get(key, [])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _bad(f"{key} is not a list")
    return [str(item).strip() for item in items if str(item).strip()][:limit]


def _choice(raw: dict[str, Any], key: str, allowed: Sequence[str], default: str | None) -> str:
    value = str(raw.get(key, default or "")).strip().lower()
    if value in allowed:
        return value
    if default is not None:
        return default
    raise _bad(f"{key} must be one of: {', '.join(allowed)}")


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(f"{key} must be true or false")


def _logos(value: Any, known_brands: Sequence[str]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("logos is not a list")
    by_name = {brand.lower(): brand for brand in known_brands}
    logos = []
    for item in value:
        if not isinstance(item, dict) or str(item.get("brand", "")).lower() not in by_name:
            continue  # a brand we did not ask about is the model's invention: dropped
        box = item["box"] if isinstance(item.get("box"), dict) else {}
        logos.append(
            {
                "brand": by_name[str(item["brand"]).lower()],
                "confidence": _fraction(item.get("confidence")),
                "box": {side: _fraction(box.get(side)) for side in ("x", "y", "width", "height")},
            }
        )
    return logos


def _fraction(value: Any) -> float:
    try:
        return min(1.0, max(0.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


def _bad(message: str) -> ProviderError:
    return ProviderError(message, code=PROVIDER_BAD_RESPONSE, retryable=False)
