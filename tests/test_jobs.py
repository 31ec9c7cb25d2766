"""Submitting image jobs over HTTP and receiving their signed webhooks."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from service.api.event_payloads import JobCompletedEvent
from service.jobs.model import Job
from service.lifecycle import end_job
from service.runtime import Runtime
from tests.support.images import image_bytes, truncated_jpeg
from tests.support.in_process import InProcessApi
from tests.support.jobs import transform_job, wait_for_status
from tests.support.openai_standin import API_KEY, OpenAIStandIn
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
    JobCompletedEvent.model_validate(webhook.payload)  # as docs/webhooks.md describes it
    job = webhook.payload["data"]
    assert (job["id"], job["status"], job["metadata"]) == (job_id, "succeeded", {"sku": "A1"})
    assert job["reference"] is None


def test_a_reference_is_echoed_by_the_job_and_its_webhook(api, make_receiver):
    receiver = make_receiver()
    body = transform_job(webhook_url=receiver.url, reference="SKU-42 / blue, large")

    job = api.post("/v1/jobs", json=body).json()
    [webhook] = receiver.wait_for(1)

    assert job["reference"] == "SKU-42 / blue, large"
    assert webhook.payload["data"]["reference"] == "SKU-42 / blue, large"
    assert api.get(f"/v1/jobs/{job['id']}").json()["reference"] == "SKU-42 / blue, large"


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
    downloaded = api.get(image["url"])
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

    response = api.get(url[:-4] + "AAAA")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "LINK_INVALID"


def test_canceling_a_finished_job_is_refused(api):
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    wait_for_status(api, job_id)

    response = api.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "JOB_ALREADY_FINISHED"


def test_a_jobs_end_is_told_once_to_the_listeners_of_the_runtime_that_ends_it(
    app_with_workers: InProcessApi, api, held_image
):
    """Batches hear of their items' ends this way, without the jobs layer knowing of them."""
    url, _ = held_image
    body = transform_job()
    body["input"]["image"] = {"url": url}
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    heard: list[tuple[str, str]] = []

    async def hear(job: Job) -> None:
        heard.append((job.id, job.status))

    async def cancel_twice() -> list[Job | None]:
        runtime = await Runtime.open(app_with_workers.settings)
        runtime.job_end.listen(hear)
        try:
            return [await end_job(runtime, job_id, "canceled") for _ in range(2)]
        finally:
            await runtime.close()

    first, again = asyncio.run(cancel_twice())

    assert first is not None and first.status == "canceled"
    assert again is None
    assert heard == [(job_id, "canceled")]
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"


def test_info_lists_job_types_and_limits(app_with_workers: InProcessApi):
    info = app_with_workers.http().get("/info").json()

    assert info["job_types"] == [
        "image.analyze",
        "image.generate",
        "image.transform",
        "text.generate",
    ]
    assert info["limits"]["max_request_bytes"] == 2_000_000
    assert "webp" in info["output_formats"]


def test_info_lists_the_configured_provider_but_never_its_key(
    app_with_workers: InProcessApi, openai_standin: OpenAIStandIn
):
    """Issue 15 item 8: /info said `"providers": []` whatever was configured."""
    response = app_with_workers.http().get("/info")

    [openai] = response.json()["providers"]
    assert openai == {
        "name": "openai",
        "host": urlsplit(openai_standin.base_url).netloc,
        "job_types": ["image.analyze", "image.generate", "text.generate"],
        "models": {
            "image.analyze": "gpt-4o-mini",
            "image.generate": "gpt-image-1",
            "text.generate": "gpt-4o-mini",
        },
        "priced_models": ["gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "gpt-image-1"],
        "api_key_set": True,
        "keys": [{"hint": "…ndin", "in_rotation": True, "status": None, "out_since": None}],
    }
    assert API_KEY not in response.text


def test_info_lists_anthropic_once_it_has_keys(make_app):
    keys = "sk-ant-first-aaaa,sk-ant-second-bbbb"
    app = make_app(PIXHOOK_ANTHROPIC_API_KEYS=keys)

    [anthropic] = app.http().get("/info").json()["providers"]

    assert anthropic["name"] == "anthropic" and anthropic["host"] == "api.anthropic.com"
    assert anthropic["job_types"] == ["image.analyze", "text.generate"]
    assert anthropic["models"] == {
        "image.analyze": "claude-haiku-4-5",
        "text.generate": "claude-haiku-4-5",
    }
    assert [key["hint"] for key in anthropic["keys"]] == ["…aaaa", "…bbbb"]


def test_health_and_readiness(app_with_workers: InProcessApi):
    anonymous = app_with_workers.http()
    assert anonymous.get("/healthcheck").json() == {"status": "ok"}
    assert anonymous.get("/readyz").json() == {"status": "ready"}
