"""`image.analyze` end to end: submitted over HTTP, run on a worker, delivered by webhook."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.analysis_scenes import encode, scene
from tests.support.images import truncated_jpeg
from tests.support.jobs import error_of, wait_for_status
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


FIELDS = {
    "width",
    "height",
    "format",
    "mode",
    "has_alpha",
    "animated",
    "frames",
    "dominant_colors",
    "brightness",
    "contrast",
    "sharpness",
    "noise",
    "quality",
    "phash",
    "dhash",
}


def analyze_job(image: bytes, **input_fields: Any) -> dict[str, Any]:
    return {
        "type": "image.analyze",
        "input": {"image": {"base64": base64.b64encode(image).decode()}, **input_fields},
    }


def submit(api: httpx.Client, image: bytes, **fields: Any) -> str:
    response = api.post("/v1/jobs", json={**analyze_job(image), **fields})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_analysis_is_the_job_output(api):
    job = wait_for_status(api, submit(api, encode(scene(), "JPEG", quality=90)))

    assert job["status"] == "succeeded", job["error"]
    analysis = job["output"]["analysis"]
    assert set(analysis) == FIELDS
    assert (analysis["width"], analysis["height"], analysis["format"]) == (800, 600, "JPEG")
    assert analysis["quality"] == {"grade": "high", "reasons": []}
    assert 0 < analysis["brightness"] < 1 and 0 < analysis["contrast"] < 1
    assert 1 < len(analysis["dominant_colors"]) <= 5
    assert len(analysis["phash"]) == len(analysis["dhash"]) == 16


def test_completed_webhook_carries_the_analysis(api, make_receiver):
    receiver = make_receiver()
    job_id = submit(api, encode(scene((300, 200))), webhook_url=receiver.url)

    [webhook] = receiver.wait_for(1)

    assert webhook.verified and webhook.payload["type"] == "job.completed"
    assert webhook.payload["data"]["id"] == job_id
    analysis = webhook.payload["data"]["output"]["analysis"]
    assert (analysis["width"], analysis["format"]) == (300, "PNG")
    assert "too_small" in analysis["quality"]["reasons"]


def test_a_damaged_image_fails_the_job_with_its_code(api):
    job = wait_for_status(api, submit(api, truncated_jpeg()))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "INVALID_IMAGE"


def test_an_unknown_provider_is_refused(api):
    response = api.post("/v1/jobs", json=analyze_job(encode(scene()), provider="acme-vision"))

    assert response.status_code == 422
    assert error_of(response) == {
        "code": "INVALID_INPUT",
        "message": "provider must be one of: anthropic, openai",
        "field": "input.provider",
    }


def test_an_unknown_input_field_is_refused(api):
    response = api.post("/v1/jobs", json=analyze_job(encode(scene()), colours=5))

    assert response.status_code == 422
    assert error_of(response)["field"] == "input.colours"


def test_a_null_provider_means_local_analysis(api):
    response = api.post("/v1/jobs", json=analyze_job(encode(scene()), provider=None))

    assert response.status_code == 202, response.text
    assert wait_for_status(api, response.json()["id"])["status"] == "succeeded"
