"""Parsing and checking what a vision model answers about a product photo."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from service.providers.chat import ImagePart, TextPart
from service.providers.errors import ProviderError
from service.providers.vision import analysis_request, parse_attributes, prepare_image
from tests.support.openai_standin import PRODUCT

GOOD: dict[str, Any] = PRODUCT  # what the stand-in provider answers by default


def test_plain_json_is_parsed():
    assert parse_attributes(json.dumps(GOOD), []) == GOOD


def test_code_fences_are_tolerated():
    text = "```json\n" + json.dumps(GOOD) + "\n```"

    assert parse_attributes(text, [])["category"] == "Footwear"


def test_plain_intent_is_repaired():
    sloppy = GOOD | {
        "has_text_overlay": "true",
        "tags": "sneaker",
        "product_condition": "NEW",
        "brand_detected": "null",
    }

    attributes = parse_attributes(json.dumps(sloppy), [])

    assert attributes["has_text_overlay"] is True
    assert attributes["tags"] == ["sneaker"]
    assert attributes["product_condition"] == "new"
    assert attributes["brand_detected"] is None


@pytest.mark.parametrize(
    "text",
    [
        "I think this is a shoe.",
        "[1, 2]",
        json.dumps(GOOD | {"category": ""}),
        json.dumps({k: v for k, v in GOOD.items() if k != "description"}),
        json.dumps(GOOD | {"image_quality": "superb"}),
        json.dumps(GOOD | {"has_text_overlay": "maybe"}),
    ],
)
def test_unusable_answers_are_rejected_with_a_code(text):
    with pytest.raises(ProviderError) as caught:
        parse_attributes(text, [])

    assert caught.value.code == "PROVIDER_BAD_RESPONSE"


def test_logos_keep_only_the_brands_asked_about_and_clamp_numbers():
    logos = [
        {
            "brand": "acme",
            "confidence": 1.7,
            "box": {"x": 0.1, "y": -2, "width": 0.3, "height": 0.2},
        },
        {"brand": "Invented", "confidence": 0.9, "box": {}},
    ]

    attributes = parse_attributes(json.dumps(GOOD | {"logos": logos}), ["Acme", "Globex"])

    assert attributes["logos"] == [
        {
            "brand": "Acme",
            "confidence": 1.0,
            "box": {"x": 0.1, "y": 0.0, "width": 0.3, "height": 0.2},
        }
    ]


def test_image_is_downscaled_and_reencoded_before_upload():
    buffer = io.BytesIO()
    Image.new("RGBA", (4000, 1000), (255, 0, 0, 255)).save(buffer, "PNG")

    prepared = prepare_image(buffer.getvalue(), 2048, 30_000_000)

    with Image.open(io.BytesIO(prepared)) as image:
        assert (image.format, image.size) == ("JPEG", (2048, 512))


def test_request_carries_the_image_and_asks_for_json():
    request = analysis_request(b"\xff\xd8jpeg", {"known_brands": ["Acme"]})

    [message] = request.messages
    prompt, image = message.parts
    assert request.json_reply and request.json_schema is None
    assert image == ImagePart(b"\xff\xd8jpeg", "image/jpeg")
    assert isinstance(prompt, TextPart) and "Acme" in prompt.text
