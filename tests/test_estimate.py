"""`POST /v1/estimate`: an image.analyze job's (or batch's) tokens and cost, worked out by the
providers' published rules without running anything."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from service.providers.estimates import Size, anthropic_image_tokens, openai_image_tokens
from tests.support.jobs import error_of
from tests.support.raw_servers import Response, Scripted


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API in this process: what the provider stand-in was sent is read here."""
    return in_process_api


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def job(image: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    image = image or {"base64": base64.b64encode(png(1000, 500)).decode()}
    return {"type": "image.analyze", "input": {"image": image, "provider": "openai"} | fields}


def estimate(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/estimate", json=body)
    assert response.status_code == 200, response.text
    figures: dict[str, Any] = response.json()
    return figures


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((1024, 1024), 765), ((2048, 4096), 1105), ((4096, 8192), 1105), ((512, 512), 255)],
)
def test_openai_images_cost_what_openai_documents_for_the_gpt_4o_class(size, tokens):
    assert openai_image_tokens("gpt-4o", Size(*size)) == tokens


def test_gpt_4o_mini_images_use_its_own_multipliers():
    assert openai_image_tokens("gpt-4o-mini", Size(1024, 1024)) == 2833 + 4 * 5667


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((200, 200), 54), ((1000, 1000), 1334), ((3000, 1000), 1092), ((1568, 1568), 1533)],
)
def test_anthropic_images_are_pixels_over_750_after_fitting(size, tokens):
    assert anthropic_image_tokens(Size(*size)) == tokens


def test_a_job_is_estimated_without_a_job_or_a_provider_call(api, openai_standin):
    openai_standin.script([])

    figures = estimate(api, job(model="gpt-4o"))

    assert figures["image"] == {
        "width": 1000,
        "height": 500,
        "sent_width": 1000,
        "sent_height": 500,
    }
    assert figures["input_tokens"]["image"] == 85 + 170 * 2
    assert figures["output_tokens"] == {"max": 1500, "typical": 250}
    total = figures["input_tokens"]["total"]
    assert figures["cost_usd"]["max"] == round((total * 2.5 + 1500 * 10) / 1e6, 8)
    assert openai_standin.requests == []
    assert api.get("/v1/jobs").json()["data"] == []


def test_text_is_counted_at_four_characters_a_token(api):
    short = estimate(api, job(instructions="x" * 400))["input_tokens"]["text"]

    longer = estimate(api, job(instructions="x" * 800))["input_tokens"]["text"]

    assert longer - short == 100


def test_max_tokens_bounds_the_reply(api):
    figures = estimate(api, job(max_tokens=100))

    assert figures["output_tokens"] == {"max": 100, "typical": 100}


def test_a_model_without_a_price_has_no_cost(api):
    assert estimate(api, job(model="some-private-model"))["cost_usd"] is None


def test_an_image_given_by_url_is_fetched_and_measured(api, serve: Callable[[Scripted], Scripted]):
    image = png(3000, 1000)
    server = serve(Scripted(lambda n: Response(200, {"content-type": "image/png"}, image)))

    figures = estimate(api, job({"url": server.url("/photo.png")}))

    assert figures["image"] == {
        "width": 3000,
        "height": 1000,
        "sent_width": 2048,
        "sent_height": 682,
    }
    # 2048x682 is within 2048 and its short side under 768: 4 x 2 tiles.
    assert figures["input_tokens"]["image"] == 2833 + 5667 * 8


def test_a_batch_is_estimated_per_item_and_in_total(api):
    items = [
        {"input": job()["input"]},
        {"input": job({"url": "https://images.example.com/a.jpg"})["input"]},
    ]

    figures = estimate(api, {"type": "image.analyze", "items": items})

    measured, assumed = figures["items"]
    assert measured["image"]["width"] == 1000 and "assumed" not in measured["image"]
    assert (assumed["image"]["width"], assumed["image"]["height"]) == (2048, 2048)
    assert "not fetched" in assumed["image"]["assumed"]
    assert figures["input_tokens"] == sum(i["input_tokens"]["total"] for i in figures["items"])
    assert figures["cost_usd"]["max"] == pytest.approx(
        measured["cost_usd"]["max"] + assumed["cost_usd"]["max"]
    )


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"type": "image.transform", "input": {}}, "UNKNOWN_JOB_TYPE", "type"),
        (job(language="xx"), "UNKNOWN_LANGUAGE", "input.language"),
        (
            {"type": "image.analyze", "items": [{"input": job(language="xx")["input"]}]},
            "UNKNOWN_LANGUAGE",
            "items[0].input.language",
        ),
        (job(brand_list="never-stored"), "BRAND_LIST_NOT_FOUND", "input.brand_list"),
    ],
)
def test_bad_bodies_are_refused_with_a_code_and_field(api, body, code, field):
    response = api.post("/v1/estimate", json=body)

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)
