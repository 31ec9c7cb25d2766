"""Regression (issue 15, item 11): every JSON route reads its body by one rule.

Jobs and batches answered 415 to a body sent as another media type, while endpoints and DLQ
replay parsed anything, `text/plain` (what an HTML form can send cross-site) included.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of

GENERATE = {"type": "image.generate", "input": {"prompt": "a red chair"}}
ENDPOINT = {"url": "https://example.com/hook"}


@pytest.fixture
def own_api(make_app: Callable[..., InProcessApi]) -> httpx.Client:
    """The API in this process, on a Redis of its own: requests in, JSON out, no worker."""
    app = make_app()
    return app.http(app.client.api_key)


@pytest.fixture
def endpoint_id(own_api: httpx.Client) -> Iterator[str]:
    created = own_api.post("/v1/endpoints", json=ENDPOINT)
    assert created.status_code == 201, created.text
    yield created.json()["id"]
    own_api.delete(f"/v1/endpoints/{created.json()['id']}")


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/jobs", GENERATE),
        ("POST", "/v1/batches", {"type": "image.generate", "items": [GENERATE]}),
        ("POST", "/v1/endpoints", ENDPOINT),
        ("PATCH", "/v1/endpoints/{endpoint_id}", {"description": "changed"}),
        ("POST", "/v1/dlq/replay", {"all": True}),
    ],
)
def test_every_json_route_refuses_a_body_of_another_media_type(
    own_api, endpoint_id, method, path, body, media_type
):
    response = own_api.request(
        method,
        path.format(endpoint_id=endpoint_id),
        content=json.dumps(body),
        headers={"content-type": media_type},
    )

    assert response.status_code == 415, response.text
    assert error_of(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"
