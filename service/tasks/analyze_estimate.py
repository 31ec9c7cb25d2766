"""What an `image.analyze` job would cost, from its parameters and its photo's size, before
anything is paid: the tokens the provider will count and their price in the table."""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.providers import vision
from service.providers.attribute_schema import canonical
from service.providers.chat import TokenUsage
from service.providers.estimates import Size, image_tokens, text_tokens
from service.providers.prices import cost_usd

# A typical reply of the default attributes (a description, tags, colours): about 1,000
# characters of JSON. With the caller's schema: 50 tokens plus an eighth of the schema's JSON
# (an answer is usually far shorter than the schema that describes it).
TYPICAL_REPLY_TOKENS = 250


def analyze_estimate(params: dict[str, Any], size: Size, settings: Settings) -> dict[str, Any]:
    """Tokens and cost of the job with these parameters (`analyze.parse_input`) on a photo of
    `size`; nothing for a job that asks no provider."""
    # The first model: the one that answers unless it fails.
    provider, model = params.get("provider"), params["models"][0]
    if provider is None:
        usage = [TokenUsage(), TokenUsage()]
        return _figures(None, None, 0, 0, usage, [0.0, 0.0])
    request = vision.analysis_request(b"", params)
    sent = size.fit(settings.providers.vision_max_side)
    text, image = text_tokens(request), image_tokens(provider, model, sent)
    schema = params.get("attributes")
    typical = TYPICAL_REPLY_TOKENS if schema is None else 50 + len(canonical(schema)) // 8
    replies = (request.max_tokens, min(request.max_tokens, typical))
    usage = [TokenUsage(text + image, reply) for reply in replies]
    costs = [cost_usd(settings, provider, model, each) for each in usage]
    return _figures(provider, model, text, image, usage, costs) | {
        "image": {"width": size.width, "height": size.height}
        | {"sent_width": sent.width, "sent_height": sent.height}
    }


def _figures(
    provider: str | None,
    model: str | None,
    text: int,
    image: int,
    usage: list[TokenUsage],
    costs: list[float | None],
) -> dict[str, Any]:
    most, typical = usage
    priced = None not in costs
    return {
        "provider": provider,
        "model": model,
        "input_tokens": {"text": text, "image": image, "total": text + image},
        "output_tokens": {"max": most.output_tokens, "typical": typical.output_tokens},
        "cost_usd": {"max": costs[0], "typical": costs[1]} if priced else None,
    }
