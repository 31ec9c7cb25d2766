"""Regression (issue 15, item 6): a field pixhook does not know is refused, never dropped.

`"webhookUrl"` was accepted as a job without a webhook, and `guidence_scale: 50` ran at 7.5.
Now every JSON body (jobs, each job type's input, batches, endpoints, DLQ replay) answers
`422 UNKNOWN_FIELD` with the field's path, suggesting the field meant when one is close.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from service.api.endpoint_input import SlackMessage
from tests.support.batches import wait_for_batch
from tests.support.images import image_bytes
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job
from webhooks.slack_templates import MESSAGE_KEYS

GENERATE = {"type": "image.generate", "input": {"prompt": "a red chair"}}
IMAGE = {"base64": base64.b64encode(image_bytes((40, 30))).decode()}


@pytest.fixture
def own_api(app_with_workers: InProcessApi) -> httpx.Client:
    """The API and its workers in this process, on a Redis of their own."""
    return app_with_workers.http(app_with_workers.client.api_key)


def with_input(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**body, "input": {**body["input"], **fields}}


@pytest.mark.parametrize(
    ("path", "body", "field", "meant"),
    [
        (
            "/v1/jobs",
            {**GENERATE, "webhookUrl": "https://example.com/h"},
            "webhookUrl",
            "webhook_url",
        ),
        ("/v1/jobs", {**GENERATE, "webhook": "https://example.com/h"}, "webhook", "webhook_url"),
        (
            "/v1/jobs",
            with_input(GENERATE, guidence_scale=50),
            "input.guidence_scale",
            "guidance_scale",
        ),
        ("/v1/jobs", transform_job(metdata={}), "metdata", "metadata"),
        (
            "/v1/batches",
            {"type": "image.generate", "items": [GENERATE], "webhookUrl": "https://example.com/h"},
            "webhookUrl",
            "webhook_url",
        ),
        (
            "/v1/endpoints",
            {"url": "https://example.com/h", "filter": {"job_type": ["image.generate"]}},
            "filter.job_type",
            "job_types",
        ),
        ("/v1/dlq/replay", {"host": "example.com", "sinse": 0}, "sinse", "since"),
        # It answered INVALID_TEMPLATE ("unknown key"): one field, two codes (issue 16).
        (
            "/v1/endpoints",
            {"url": "https://example.com/h", "kind": "slack", "templates": {"*": {"txt": "hi"}}},
            "templates.*.txt",
            "text",
        ),
    ],
    ids=[
        "webhookUrl",
        "webhook",
        "guidence_scale",
        "metdata",
        "batch",
        "endpoint-filter",
        "dlq",
        "slack-template",
    ],
)
def test_a_misspelt_field_is_refused_with_the_name_it_meant(own_api, path, body, field, meant):
    response = own_api.post(path, json=body)

    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "UNKNOWN_FIELD"
    assert error_of(response)["field"] == field
    assert f"did you mean '{meant}'?" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            with_input(GENERATE, initial_image_url="https://example.com/a.jpg"),
            "input.initial_image_url",
        ),
        (
            transform_job() | {"input": {"image": {"base64": "aGk=", "name": "a.jpg"}}},
            "input.image.name",
        ),
        (
            with_input(
                transform_job(), mode="fill", height=100, focal_point={"x": 0.5, "y": 0.5, "z": 1}
            ),
            "input.focal_point.z",
        ),
        (
            with_input(transform_job(), variants={"thumb": {"width": 10, "colour": "red"}}),
            "input.variants.thumb.colour",
        ),
        (
            transform_job() | {"type": "image.analyze", "input": {"image": IMAGE, "colours": 5}},
            "input.colours",
        ),
    ],
    ids=["generate-input", "image", "focal_point", "variant", "analyze-input"],
)
def test_an_unknown_job_field_is_refused_wherever_it_is(own_api, body, field):
    response = own_api.post("/v1/jobs", json=body)

    assert response.status_code == 422, response.text
    assert (error_of(response)["code"], error_of(response)["field"]) == ("UNKNOWN_FIELD", field)


def test_a_multipart_job_with_an_unknown_part_is_refused(own_api):
    files = {"file": ("a.jpg", image_bytes(), "image/jpeg")}

    response = own_api.post("/v1/jobs", data={"job": json.dumps(GENERATE)}, files=files)

    assert response.status_code == 422, response.text
    assert (error_of(response)["code"], error_of(response)["field"]) == ("UNKNOWN_FIELD", "file")


def test_an_unknown_endpoint_field_is_refused_when_changing_it(own_api):
    created = own_api.post("/v1/endpoints", json={"url": "https://example.com/h"}).json()

    response = own_api.patch(f"/v1/endpoints/{created['id']}", json={"enabeld": False})
    own_api.delete(f"/v1/endpoints/{created['id']}")

    assert response.status_code == 422, response.text
    assert (error_of(response)["code"], error_of(response)["field"]) == ("UNKNOWN_FIELD", "enabeld")
    assert "did you mean 'enabled'?" in error_of(response)["message"]


def test_an_unknown_item_field_fails_that_item_alone(own_api):
    """A bad item fails by itself (see batches.intake), with the same code and its full path."""
    items = [GENERATE, with_input(GENERATE, guidence_scale=50)]

    response = own_api.post("/v1/batches", json={"type": "image.generate", "items": items})

    assert response.status_code == 202, response.text
    batch = wait_for_batch(own_api, response.json()["id"])
    assert batch["failures"][0]["error"] | {"message": ""} == {
        "code": "UNKNOWN_FIELD",
        "message": "",
        "field": "items[1].input.guidence_scale",
    }


def test_a_slack_message_model_takes_the_keys_the_template_check_reads():
    """The model refuses what `webhooks.slack_templates` would call an unknown key, no less."""
    assert set(SlackMessage.model_fields) == set(MESSAGE_KEYS)
