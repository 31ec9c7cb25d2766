"""`image.generate` against a stand-in OpenAI-compatible provider."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.images import many_page_tiff
from tests.support.jobs import error_of, wait_for_status
from tests.support.openai_standin import Answer
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API and both workers in this process: these jobs and webhooks cross no process."""
    return in_process_api


@pytest.fixture
def make_receiver(
    in_process_receivers: Callable[..., Receiver],
) -> Callable[..., Receiver]:
    return in_process_receivers


def generate(api: httpx.Client, **fields: Any) -> httpx.Response:
    return api.post(
        "/v1/jobs", json={"type": "image.generate", "input": {"prompt": "a red sneaker", **fields}}
    )


def run(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = generate(api, **fields)
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def test_generated_image_is_stored_and_linked(api, openai_standin):
    openai_standin.script([])

    job = run(api, width=256, height=128, seed=7, negative_prompt="blurry", steps=30)

    assert job["status"] == "succeeded", job["error"]
    [image] = job["output"]["images"]
    assert (image["width"], image["height"], image["format"]) == (256, 128, "png")
    assert Image.open(io.BytesIO(api.get(image["url"]).content)).size == (256, 128)
    sent = openai_standin.requests[0]["body"]
    assert sent["size"] == "256x128" and sent["seed"] == 7 and sent["steps"] == 30
    assert sent["negative_prompt"] == "blurry" and sent["guidance_scale"] == 7.5


def test_defaults_are_50_steps_7_5_guidance_1024_square(api):
    job = wait_for_status(api, generate(api).json()["id"])

    assert {k: job["input"][k] for k in ("steps", "guidance_scale", "width", "height")} == {
        "steps": 50,
        "guidance_scale": 7.5,
        "width": 1024,
        "height": 1024,
    }


def test_images_answered_as_links_are_downloaded_and_stored(api, openai_standin):
    openai_standin.script([Answer(as_urls=True)])

    job = run(api, width=64, height=64, n=2)

    assert job["status"] == "succeeded", job["error"]
    assert [i["width"] for i in job["output"]["images"]] == [64, 64]
    assert "/generated/" not in job["output"]["images"][0]["url"]  # ours, not the provider's


def test_several_images_from_one_prompt(api):
    job = run(api, n=3, width=64, height=64)

    assert [i["name"] for i in job["output"]["images"]] == ["image-0", "image-1", "image-2"]


def test_rate_limited_provider_is_retried_after_retry_after(api, openai_standin):
    openai_standin.script([Answer(429, {"retry-after": "1"})])

    job = run(api, width=64, height=64)

    first, second = openai_standin.requests[:2]
    assert job["status"] == "succeeded"
    assert job["output"]["provider"]["attempts"] == 2
    assert second["at"] - first["at"] >= 0.9


def test_server_errors_and_malformed_json_are_retried(api, openai_standin):
    openai_standin.script([Answer(500), Answer(malformed=True), Answer(503)])

    job = run(api, width=64, height=64)

    assert job["status"] == "succeeded"
    assert job["output"]["provider"]["attempts"] == 4


def test_provider_that_keeps_failing_fails_the_job_with_a_code(api, openai_standin):
    openai_standin.script([Answer(500)] * 4)

    job = run(api, width=64, height=64)

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_UNAVAILABLE")


def test_slow_provider_times_out_and_is_retried(api, openai_standin):
    openai_standin.script([Answer(delay_s=3)])

    job = run(api, width=64, height=64)

    assert job["status"] == "succeeded"
    assert job["output"]["provider"]["attempts"] == 2


def test_a_refused_only_key_fails_the_job_at_once(api, openai_standin):
    openai_standin.script([Answer(401)])

    job = run(api, width=64, height=64)

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_KEYS_EXHAUSTED")
    assert len(openai_standin.requests) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "input.prompt"),
        ({"prompt": "   "}, "input.prompt"),
        ({"prompt": "x" * 4001}, "input.prompt"),
        ({"width": 4096}, "input.width"),
        ({"height": 100}, "input.height"),  # not a multiple of 8
        ({"guidance_scale": -1}, "input.guidance_scale"),
        ({"steps": 0}, "input.steps"),
        ({"steps": 500}, "input.steps"),
        ({"n": 9}, "input.n"),
        ({"seed": -1}, "input.seed"),
    ],
)
def test_invalid_generation_input_names_its_field(api, fields, field):
    response = generate(api, **fields)

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)


def test_a_photo_to_edit_that_is_no_image_is_refused(api):
    response = generate(api, image={"base64": "AAAA"})

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "INVALID_IMAGE",
        "input.image",
    )


def test_a_provider_image_of_many_pages_is_refused_without_reading_them_all(api, openai_standin):
    """Issue 15, item 19: a provider's image was inspected on the worker's event loop with no
    frame limit, so a 22,000-page TIFF was read to the end (seconds) and then stored."""
    openai_standin.script([Answer(image=many_page_tiff(22_000))])

    job = run(api)

    assert job["error"]["code"] == "PROVIDER_BAD_RESPONSE"
    assert "more than 1000 frames" in job["error"]["message"]
