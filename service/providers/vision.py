"""What a vision model is asked about a product photo, and what is read from its answer.

The request is provider-neutral (`ChatRequest`): a system prompt with the caller's instructions
and language, the photo with the fields wanted (the default product attributes, or the caller's
JSON Schema), and the brands to look for. The reply is parsed (code fences tolerated), made to
fit (product_attributes.py, attribute_schema.py) and its logos matched (brand_match.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from service import imaging
from service.providers.attribute_schema import canonical, conform
from service.providers.brand_match import BrandIndex, matched_logos
from service.providers.chat import ChatRequest, ImagePart, Message, TextPart
from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError
from service.providers.product_attributes import PROMPT, product_attributes

# Part of the cache key: a reworded prompt must not be answered from an older prompt's cache.
PROMPT_VERSION = "ecommerce-v2"
# Part of the cache key too: answers about images prepared otherwise are not served. Until v2,
# transparent pixels went up black, and the model described the product on a black backdrop.
PREPARATION_VERSION = "v2"
# What the upload may weigh (OpenAI takes up to 20 MB; each MB is seconds of upload and decode).
MAX_UPLOAD_BYTES = 5_000_000
# A product description's JSON is ~150–400 tokens; logos add ~40 each.
DEFAULT_MAX_TOKENS = 1500

_SYSTEM = "You describe product photos for an online shop's catalogue."
_LANGUAGE = """
Write every description, tag and other free text in the language whose BCP 47 tag is {tag}.
Keep JSON keys, and values chosen from a given list, in English exactly as given."""
_INSTRUCTIONS = """
The shop's instructions:
{instructions}"""
_SCHEMA_PROMPT = """Answer with one JSON object and nothing else, fitting this JSON Schema:
{schema}"""
_LOGO_PROMPT = """
Also add "logos": a list of the brands from this list whose logo is visible: {brands}.
Each item: {{"brand": one of those names, "confidence": 0..1,
"box": {{"x": 0..1, "y": 0..1, "width": 0..1, "height": 0..1}}}} (fractions of the image)."""
# A long list of brands is not sent: the model names what it sees, matched against the list after.
_SPOT_PROMPT = """
Also add "logos": a list of every brand whose logo or name is visible, as written on it.
Each item: {"brand": the brand's name, "confidence": 0..1,
"box": {"x": 0..1, "y": 0..1, "width": 0..1, "height": 0..1}} (fractions of the image)."""
_FRACTION = {"type": "number"}
_LOGOS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "brand": {"type": "string"},
            "confidence": _FRACTION,
            "box": {
                "type": "object",
                "properties": {side: _FRACTION for side in ("x", "y", "width", "height")},
                "required": ["x", "y", "width", "height"],
                "additionalProperties": False,
            },
        },
        "required": ["brand", "confidence", "box"],
        "additionalProperties": False,
    },
}

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


def analysis_request(jpeg: bytes, params: dict[str, Any]) -> ChatRequest:
    """The question about the photo `jpeg` for a job's parameters (`analyze.parse_input`)."""
    system = _SYSTEM
    if params.get("language"):
        system += _LANGUAGE.format(tag=params["language"])
    if params.get("instructions"):
        system += _INSTRUCTIONS.format(instructions=params["instructions"])
    schema = reply_schema(params)
    prompt = PROMPT if schema is None else _SCHEMA_PROMPT.format(schema=canonical(schema))
    if params.get("brand_list"):
        prompt += _SPOT_PROMPT
    elif params.get("known_brands"):
        prompt += _LOGO_PROMPT.format(brands=", ".join(params["known_brands"]))
    return ChatRequest(
        messages=(Message("user", (TextPart(prompt), ImagePart(jpeg))),),
        system=system,
        max_tokens=int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
        json_reply=True,
        json_schema=schema,
    )


def reply_schema(params: dict[str, Any]) -> dict[str, Any] | None:
    """The caller's schema as the model gets it: with `logos` when brands are looked for, so a
    provider that holds the model to the schema lets it answer them."""
    schema: dict[str, Any] | None = params.get("attributes")
    if schema is None or not (params.get("brand_list") or params.get("known_brands")):
        return schema
    properties = schema.get("properties", {}) | {"logos": _LOGOS_SCHEMA}
    required = [*(name for name in schema.get("required", []) if name != "logos"), "logos"]
    return schema | {"properties": properties, "required": required}


def parse_reply(text: str, params: dict[str, Any], brands: BrandIndex) -> dict[str, Any]:
    """The attributes from the model's text: the caller's schema's, else the default product
    attributes; with `logos` matched against `brands` when brands were looked for."""
    fenced = _FENCE.match(text)
    try:
        raw = json.loads(fenced[1] if fenced else text)
    except ValueError as exc:
        raise _bad("the model's answer is not JSON") from exc
    if not isinstance(raw, dict):
        raise _bad("the model's answer is not a JSON object")
    logos = raw.pop("logos", None) if brands else None
    schema: dict[str, Any] | None = params.get("attributes")
    attributes = product_attributes(raw) if schema is None else conform(raw, schema)
    if brands:
        attributes["logos"] = matched_logos(logos, brands)
    return dict(attributes)


def parse_attributes(text: str, known_brands: Sequence[str]) -> dict[str, Any]:
    """The default product attributes from the model's text, logos among `known_brands`."""
    return parse_reply(text, {}, BrandIndex(known_brands))


def _bad(message: str) -> ProviderError:
    return ProviderError(message, code=PROVIDER_BAD_RESPONSE, retryable=False)
