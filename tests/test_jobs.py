"""Submitting image jobs over HTTP and receiving their signed webhooks."""

from __future__ import annotations

import io
import json
from urllib.parse import urlsplit

import httpx
from PIL import Image

from service.devstack import RunningStack
from tests.helpers import image_bytes, transform_job, truncated_jpeg, wait_for_status
from tests.openai_standin import API_KEY, OpenAIStandIn


def test_completed_job_arrives_as_a_verified_webhook(api, make_receiver):
    receiver = make_receiver()
    response = api.post(
        "/v1/jobs", json=transform_job(webhook_url=receiver.url, metadata={"sku": "A1"})
    )
    assert response.status_code == 202
    job_id = response.json()["id"]

    [webhook] = receiver.wait_for(1)

    assert webhook.verified
    assert webhook.payload["type"] == "job.completed"
    assert webhook.payload["id"] == webhook.webhook_id
    job = webhook.payload["data"]
    assert (job["id"], job["status"], job["metadata"]) == (job_id, "succeeded", {"sku": "A1"})


def test_submission_answers_202_with_a_queued_job(api):
    response = api.post("/v1/jobs", json=transform_job())

    assert response.status_code == 202
    job = response.json()
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    assert job["urls"]["self"].endswith(f"/v1/jobs/{job['id']}")


def test_polled_job_has_a_downloadable_output(api):
    job_id = api.post("/v1/jobs", json=transform_job(image_bytes((400, 300)))).json()["id"]

    job = wait_for_status(api, job_id)

    assert job["status"] == "succeeded"
    [image] = job["output"]["images"]
    assert (image["width"], image["height"], image["format"]) == (100, 75, "png")
    downloaded = httpx.get(image["url"])
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(downloaded.content)).size == (100, 75)


def test_job_record_keeps_input_description_without_the_bytes(api):
    job_id = api.post("/v1/jobs", json=transform_job(image_bytes((64, 48)))).json()["id"]

    job = wait_for_status(api, job_id)

    assert job["input"]["image"] == {
        "source": "base64",
        "bytes": len(image_bytes((64, 48))),
        "format": "JPEG",
        "width": 64,
        "height": 48,
    }
    assert job["started_at"] <= job["finished_at"]


def test_multipart_upload_runs_like_base64(api):
    job = {"type": "image.transform", "input": {"width": 50, "format": "webp"}}
    files = {"image": ("photo.jpg", image_bytes((200, 100)), "image/jpeg")}

    response = api.post("/v1/jobs", data={"job": json.dumps(job)}, files=files)

    assert response.status_code == 202, response.text
    finished = wait_for_status(api, response.json()["id"])
    assert finished["input"]["image"]["source"] == "upload"
    assert finished["output"]["images"][0]["width"] == 50


def test_a_job_that_cannot_decode_fails_with_a_code_and_a_webhook(api, make_receiver):
    receiver = make_receiver()
    response = api.post("/v1/jobs", json=transform_job(truncated_jpeg(), webhook_url=receiver.url))
    assert response.status_code == 202

    [webhook] = receiver.wait_for(1)

    assert webhook.payload["type"] == "job.failed"
    assert webhook.payload["data"]["error"]["code"] == "INVALID_IMAGE"


def test_started_event_precedes_completed_in_sequence(api, make_receiver):
    receiver = make_receiver()
    api.post(
        "/v1/jobs",
        json=transform_job(webhook_url=receiver.url, webhook_events=["started", "completed"]),
    )

    webhooks = receiver.wait_for(2)

    by_type = {w.payload["type"]: w.payload["data"]["sequence"] for w in webhooks}
    assert by_type["job.started"] < by_type["job.completed"]


def test_output_link_with_a_forged_token_is_refused(api):
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    url = wait_for_status(api, job_id)["output"]["images"][0]["url"]

    response = httpx.get(url[:-4] + "AAAA")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "LINK_INVALID"


def test_canceling_a_finished_job_is_refused(api):
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    wait_for_status(api, job_id)

    response = api.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "JOB_ALREADY_FINISHED"


def test_info_lists_job_types_and_limits(stack: RunningStack):
    info = httpx.get(f"{stack.api_url}/info").json()

    assert info["job_types"] == ["image.analyze", "image.generate", "image.transform"]
    assert info["limits"]["max_request_bytes"] == 2_000_000
    assert "webp" in info["output_formats"]


def test_info_lists_the_configured_provider_but_never_its_key(
    stack: RunningStack, openai_standin: OpenAIStandIn
):
    """Issue 15 item 8: /info said `"providers": []` whatever was configured."""
    response = httpx.get(f"{stack.api_url}/info")

    assert response.json()["providers"] == [
        {
            "name": "openai",
            "host": urlsplit(openai_standin.base_url).netloc,
            "models": {"image.analyze": "gpt-4o-mini", "image.generate": "gpt-image-1"},
            "api_key_set": True,
        }
    ]
    assert API_KEY not in response.text


def test_health_and_readiness(stack: RunningStack):
    assert httpx.get(f"{stack.api_url}/healthcheck").json() == {"status": "ok"}
    assert httpx.get(f"{stack.api_url}/readyz").json() == {"status": "ready"}
