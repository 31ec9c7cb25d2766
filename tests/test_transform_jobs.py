"""`image.transform` through the API: variants, modes and their validation."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from service.config import JobSettings, Settings
from service.imaging import DEFAULT_WEBP_EFFORT
from service.tasks import transform
from tests.support import icc_profiles
from tests.support.images import image_bytes
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, wait_for_status


@pytest.fixture
def api(make_app: Callable[..., InProcessApi]) -> httpx.Client:
    """The API and a jobs worker in this process: a transform crosses no process."""
    app = make_app()
    app.start_worker("jobs")
    return app.http(app.client.api_key)


def transform_body(image: bytes, **input_fields: Any) -> dict[str, Any]:
    encoded = base64.b64encode(image).decode()
    return {"type": "image.transform", "input": {"image": {"base64": encoded}, **input_fields}}


def test_job_with_three_variants_gives_three_downloadable_images(api):
    variants = {
        "thumb": {"mode": "fill", "width": 128, "height": 128, "format": "webp"},
        "zoom": {"max_side": 600, "format": "jpeg", "progressive": True},
        "card": {"mode": "pad", "width": 300, "height": 300, "background": "#000000"},
    }
    body = transform_body(image_bytes((1200, 800)), format="png", variants=variants)

    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = wait_for_status(api, response.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    images = {image["name"]: image for image in job["output"]["images"]}
    assert {name: (i["width"], i["height"], i["format"]) for name, i in images.items()} == {
        "thumb": (128, 128, "webp"),
        "zoom": (600, 400, "jpeg"),
        "card": (300, 300, "png"),  # the top-level format is every variant's default
    }
    for image in images.values():
        downloaded = api.get(image["url"])
        assert downloaded.status_code == 200
        assert downloaded.headers["content-type"] == image["media_type"]
        size = Image.open(io.BytesIO(downloaded.content)).size
        assert size == (image["width"], image["height"])


def test_job_without_variants_has_one_default_image(api):
    body = transform_body(image_bytes((400, 200)), mode="fill", width=50, height=50)

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    [image] = job["output"]["images"]
    assert (image["name"], image["width"], image["height"]) == ("default", 50, 50)


def test_webp_effort_is_chosen_per_variant_and_recorded_when_defaulted(api):
    noisy = io.BytesIO()
    Image.effect_noise((300, 300), 60).convert("RGB").save(noisy, "PNG")
    variants = {"fast": {}, "small": {"effort": 6}, "jpeg": {"format": "jpeg"}}
    body = transform_body(noisy.getvalue(), format="webp", variants=variants)

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert job["status"] == "succeeded", job["error"]
    recorded = {name: output.get("effort") for name, output in job["input"]["variants"].items()}
    assert recorded == {"fast": DEFAULT_WEBP_EFFORT, "small": 6, "jpeg": None}
    sizes = {image["name"]: image["bytes"] for image in job["output"]["images"]}
    assert sizes["small"] < sizes["fast"]


def test_output_that_cannot_fit_max_bytes_fails_the_job(api):
    noisy = io.BytesIO()
    Image.effect_noise((300, 300), 60).convert("RGB").save(noisy, "PNG")
    body = transform_body(noisy.getvalue(), format="jpeg", max_bytes=300)

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert job["status"] == "failed"
    assert job["error"]["code"] == "OUTPUT_TOO_LARGE"


def test_an_output_beyond_the_largest_side_fails_with_its_own_code(api):
    """Issue 15, item 21: a 1x65535 PNG with `width: 32` keeps its shape, which JPEG cannot
    encode, and the job ended INTERNAL_ERROR. Each output's size is checked before decoding."""
    tall = io.BytesIO()
    Image.new("L", (1, 65_535)).save(tall, "PNG")
    body = transform_body(tall.getvalue(), width=32, format="jpeg")

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert (job["status"], job["error"]["code"]) == ("failed", "OUTPUT_SIDE_TOO_LARGE")
    assert "1x65535" in job["error"]["message"]


def test_a_thumbnail_of_an_image_with_a_megabyte_profile_fits_its_max_bytes(api):
    """Issue 15, item 23: an input's 1 MB RGB ICC profile was copied into every output, so a
    32x24 thumbnail weighed 1,049,881 bytes and `max_bytes: 20000` failed."""
    photo = io.BytesIO()
    profile = icc_profiles.rgb_profile(private_bytes=1 << 20)
    Image.new("RGB", (320, 240), (200, 40, 40)).save(photo, "JPEG", icc_profile=profile)
    body = transform_body(photo.getvalue(), width=32, format="jpeg", max_bytes=20_000)

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert job["status"] == "succeeded", job["error"]
    [image] = job["output"]["images"]
    assert (image["width"], image["height"]) == (32, 24)
    assert image["bytes"] <= 20_000


@pytest.mark.parametrize(
    ("input_fields", "field"),
    [
        ({"variants": {"thumb": {"width": 0}}}, "input.variants.thumb.width"),
        ({"variants": {"thumb": {"format": "bmp"}}}, "input.variants.thumb.format"),
        ({"variants": {"thumb": {"mode": "fill", "width": 10}}}, "input.variants.thumb.height"),
        (
            {
                "variants": {
                    "a": {"mode": "fill", "width": 9, "height": 9, "focal_point": {"x": 2, "y": 0}}
                }
            },
            "input.variants.a.focal_point.x",
        ),
        (
            {
                "variants": {
                    "a": {"mode": "crop", "box": {"left": -1, "top": 0, "width": 5, "height": 5}}
                }
            },
            "input.variants.a.box.left",
        ),
        ({"variants": {"a": {"background": "white"}}}, "input.variants.a.background"),
        ({"variants": {"a": {"lossless": True}}}, "input.variants.a.lossless"),
        ({"variants": {"a": {"effort": 4}}}, "input.variants.a.effort"),
        ({"format": "webp", "effort": 7}, "input.effort"),
        ({"format": "webp", "effort": "max"}, "input.effort"),
        ({"format": "webp", "effort": True}, "input.effort"),
        ({"variants": {"bad name": {}}}, "input.variants.bad name"),
        ({"variants": {f"v{n}": {} for n in range(11)}}, "input.variants"),
        ({"variants": {}}, "input.variants"),
        ({"mode": "crop"}, "input.box"),
        ({"gravity": "up"}, "input.gravity"),
        ({"upscale": "yes"}, "input.upscale"),
    ],
)
def test_bad_transform_parameter_is_422_naming_the_nested_field(api, input_fields, field):
    response = api.post("/v1/jobs", json=transform_body(image_bytes(), **input_fields))

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)


@pytest.mark.parametrize(
    ("operators_effort", "expected"),
    [
        (None, {"plain": 2, "own": 0, "budget": 4, "png": None}),
        (5, {"plain": 5, "own": 0, "budget": 5, "png": None}),
    ],
)
def test_webp_outputs_without_an_effort_get_the_operators_or_the_budgets(
    operators_effort, expected
):
    variants = {
        "plain": {},
        "own": {"effort": 0},
        "budget": {"max_bytes": 9000},
        "png": {"format": "png"},
    }
    settings = (
        Settings()
        if operators_effort is None
        else Settings(jobs=JobSettings(webp_effort=operators_effort))
    )

    raw = transform.TransformInput.model_validate({"format": "webp", "variants": variants})
    parsed = transform.parse_input(raw, settings)

    assert {name: output["effort"] for name, output in parsed["variants"].items()} == expected
