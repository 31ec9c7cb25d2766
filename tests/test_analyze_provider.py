"""`image.analyze` with `provider: "openai"` against the stand-in vision provider."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.helpers import error_of, image_bytes, wait_for_status
from tests.openai_standin import PRODUCT, Answer


def analyze(api: httpx.Client, image: bytes, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "image.analyze",
        "input": {
            "image": {"base64": base64.b64encode(image).decode()},
            "provider": "openai",
            **fields,
        },
    }
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def unique_photo(seed: int, size: tuple[int, int] = (300, 200)) -> bytes:
    """A photo no other test sends, so the attribute cache cannot answer for it."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed % 256, (seed * 7) % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def sent_image(request: dict[str, Any]) -> Image.Image:
    url = request["body"]["messages"][0]["content"][1]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_attributes_come_back_with_usage_and_the_local_analysis(api, openai_standin):
    openai_standin.script([])

    job = analyze(api, unique_photo(1))

    assert job["status"] == "succeeded", job["error"]
    output = job["output"]
    assert output["attributes"] == PRODUCT
    assert output["analysis"]["width"] == 300
    assert output["provider"]["usage"]["total_tokens"] == 970
    assert output["provider"]["cached"] is False and output["provider"]["latency_ms"] > 0


def test_large_photo_is_downscaled_and_sent_as_jpeg(api, openai_standin):
    openai_standin.script([])

    analyze(api, unique_photo(2, size=(4000, 1000)))

    image = sent_image(openai_standin.requests[0])
    assert (image.format, image.size) == ("JPEG", (2048, 512))


def test_the_same_photo_is_not_paid_for_twice(api, openai_standin):
    photo = unique_photo(3)
    analyze(api, photo)
    openai_standin.script([])

    again = analyze(api, photo)

    assert again["output"]["provider"]["cached"] is True
    assert again["output"]["attributes"] == PRODUCT
    assert openai_standin.requests == []


def test_code_fenced_answer_is_accepted(api, openai_standin):
    openai_standin.script([Answer(content="```json\n" + json.dumps(PRODUCT) + "\n```")])

    job = analyze(api, unique_photo(4))

    assert job["output"]["attributes"]["category"] == "Footwear"


def test_known_brands_come_back_as_logos(api, openai_standin):
    logo = {
        "brand": "acme",
        "confidence": 0.93,
        "box": {"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.1},
    }
    answer = PRODUCT | {"brand_detected": "Acme", "logos": [logo]}
    openai_standin.script([Answer(content=json.dumps(answer))])

    job = analyze(api, unique_photo(5), known_brands=["Acme", "Globex"])

    assert job["output"]["attributes"]["logos"] == [logo | {"brand": "Acme"}]
    assert "Globex" in openai_standin.requests[0]["body"]["messages"][0]["content"][0]["text"]


@pytest.mark.parametrize(
    ("answers", "code"),
    [
        ([Answer(content="It looks like a shoe to me.")], "PROVIDER_BAD_RESPONSE"),
        ([Answer(401)], "PROVIDER_AUTH"),
        ([Answer(500)] * 4, "PROVIDER_UNAVAILABLE"),
    ],
)
def test_provider_failures_fail_the_job_with_a_code(api, openai_standin, answers, code):
    openai_standin.script(answers)

    job = analyze(api, unique_photo(10 + len(code)))

    assert (job["status"], job["error"]["code"]) == ("failed", code)


def test_rate_limited_provider_is_retried(api, openai_standin):
    openai_standin.script([Answer(429, {"retry-after": "1"})])

    job = analyze(api, unique_photo(6))

    assert job["status"] == "succeeded"
    assert job["output"]["provider"]["attempts"] == 2


def test_known_brands_must_be_names(api):
    body = {
        "type": "image.analyze",
        "input": {
            "image": {"base64": base64.b64encode(image_bytes()).decode()},
            "known_brands": "Acme",
        },
    }

    response = api.post("/v1/jobs", json=body)

    assert (response.status_code, error_of(response)["field"]) == (422, "input.known_brands")
