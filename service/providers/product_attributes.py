"""The default attributes: what an online shop's catalogue needs of a product photo, read from
the model's JSON and repaired where the intent is plain (a "true" string, a single tag, an
unknown condition)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError

CONDITIONS = ("new", "used", "refurbished", "damaged", "unknown")
QUALITIES = ("high", "medium", "low")
MAX_TAGS = 20

PROMPT = """Answer with one JSON object and nothing else, with exactly these keys:
"category" (string), "subcategory" (string or null),
"brand_detected" (string, or null unless a brand logo or name is clearly visible),
"dominant_colors" (list of colour names), "primary_material" (string or null),
"product_condition" (one of: new, used, refurbished, damaged, unknown),
"image_quality" (one of: high, medium, low), "has_text_overlay" (true or false),
"description" (one or two sentences), "tags" (up to 20 short strings)."""


def product_attributes(raw: dict[str, Any]) -> dict[str, Any]:
    return {
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


def _bad(message: str) -> ProviderError:
    return ProviderError(message, code=PROVIDER_BAD_RESPONSE, retryable=False)
