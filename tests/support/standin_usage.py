"""How the provider stand-ins count tokens and describe a key's window, the rules their
docstrings state: exact and deterministic, so that tests check usage and cost to the token.
"""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image

from tests.support.standin_server import Quota


def text_tokens(text: str) -> int:
    """Both stand-ins: a token per 4 characters, rounded up."""
    return math.ceil(len(text) / 4)


# Anthropic.


def anthropic_headers(quota: Quota) -> dict[str, str]:
    """`anthropic-ratelimit-*` for a key's window; resets are RFC 3339 times."""
    moment = datetime.now(UTC) + timedelta(seconds=quota.reset_s)
    reset = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    tokens_limit = quota.input_tokens_limit + quota.output_tokens_limit
    tokens = quota.input_tokens_remaining + quota.output_tokens_remaining
    figures = {
        "requests": (quota.requests_limit, quota.requests_remaining),
        "input-tokens": (quota.input_tokens_limit, quota.input_tokens_remaining),
        "output-tokens": (quota.output_tokens_limit, quota.output_tokens_remaining),
        "tokens": (tokens_limit, tokens),
    }
    headers: dict[str, str] = {}
    for name, (limit, remaining) in figures.items():
        headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers | {"request-id": "req_standin"}


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's count: the image shrunk to fit 1568 px on its long side, then w * h / 750."""
    scale = min(1.0, 1568 / max(width, height))
    return math.ceil(round(width * scale) * round(height * scale) / 750)


def anthropic_input_tokens(body: dict[str, Any]) -> int:
    """The input tokens of a request, by the rule the stand-in's docstring states."""
    characters = len(str(body.get("system") or ""))
    if body.get("tools"):
        characters += len(json.dumps(body["tools"]))
    images = 0
    for block in anthropic_blocks(body):
        if block.get("type") == "text":
            characters += len(str(block.get("text", "")))
        elif block.get("type") == "image":
            data = base64.b64decode(block["source"]["data"])
            with Image.open(io.BytesIO(data)) as image:
                images += anthropic_image_tokens(*image.size)
    return math.ceil(characters / 4) + images


def anthropic_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        content = message.get("content")
        blocks += [{"type": "text", "text": content}] if isinstance(content, str) else content
    return blocks


# OpenAI.


def openai_headers(quota: Quota) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` for a key's window; tokens are input and output together."""
    tokens_limit = quota.input_tokens_limit + quota.output_tokens_limit
    tokens = quota.input_tokens_remaining + quota.output_tokens_remaining
    reset = duration(quota.reset_s)
    return {
        "x-ratelimit-limit-requests": str(quota.requests_limit),
        "x-ratelimit-remaining-requests": str(quota.requests_remaining),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(tokens_limit),
        "x-ratelimit-remaining-tokens": str(tokens),
        "x-ratelimit-reset-tokens": reset,
        "x-request-id": "req_standin",
    }


def duration(seconds: float) -> str:
    """OpenAI's format for a reset: `250ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


def openai_image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile rule: at low detail 85; else fit in 2048 px, shortest side to 768 px, then
    85 + 170 per 512 px tile."""
    if detail == "low":
        return 85
    fitted = min(1.0, 2048 / max(width, height))
    scale = fitted * min(1.0, 768 / (min(width, height) * fitted))
    return 85 + 170 * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def openai_prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens of a chat request, by the rule the stand-in's docstring states."""
    characters = len(json.dumps(body["response_format"])) if body.get("response_format") else 0
    images = 0
    for part in openai_parts(body):
        if part.get("type") == "text":
            characters += len(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            images += _openai_image_part(part["image_url"])
    return math.ceil(characters / 4) + images


def _openai_image_part(image_url: dict[str, Any]) -> int:
    url = str(image_url.get("url", ""))
    if not url.startswith("data:"):
        return openai_image_tokens(1024, 1024)
    with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
        return openai_image_tokens(*image.size, detail=str(image_url.get("detail", "auto")))


def openai_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        content = message.get("content")
        parts += [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    return parts
