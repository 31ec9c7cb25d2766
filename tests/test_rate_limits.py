"""Per-client request rates and in-flight job quotas, kept in Redis, against the API in this
process (no worker runs, so every job submitted stays in flight). What needs a worker or a
second replica is in test_rate_limits_shared.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.clients.store import ClientLimits
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job

# Tight service defaults, so that the stack's own client runs into them at once.
DEFAULTS_ENV = {
    "PIXHOOK_CLIENT_REQUESTS_PER_SECOND": "2",
    "PIXHOOK_CLIENT_BURST": "4",
    "PIXHOOK_CLIENT_MAX_IN_FLIGHT": "5",
}
ROOMY = {"requests_per_s": 1000.0, "burst": 1000}


@pytest.fixture
def app(make_app: Callable[..., InProcessApi]) -> InProcessApi:
    return make_app(**DEFAULTS_ENV)


@pytest.fixture
def make_api(app: InProcessApi) -> Callable[..., httpx.Client]:
    """A client of its own with these limits (unset ones take the service's), and its API."""

    def create(**limits: Any) -> httpx.Client:
        return app.http(app.new_client("limited", ClientLimits(**limits)).api_key)

    return create


def held_job(url: str) -> dict[str, Any]:
    body = transform_job()
    body["input"]["image"] = {"url": url}
    return body


def test_requests_beyond_the_burst_get_429_with_retry_after(make_api):
    api = make_api(requests_per_s=0.5, burst=3)
    statuses = [api.get("/v1/dlq").status_code for _ in range(3)]
    refused = api.get("/v1/dlq")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 2  # one request per 2 s
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-limit"] == "3"


def test_successful_responses_carry_ratelimit_headers(make_api):
    api = make_api(requests_per_s=1, burst=3)
    first, second = api.get("/v1/dlq"), api.get("/v1/dlq")
    assert first.headers["ratelimit-limit"] == "3"
    assert [first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]] == [
        "2",
        "1",
    ]
    assert 1 <= int(second.headers["ratelimit-reset"]) <= 2
    assert first.headers["ratelimit-policy"] == "3;w=3"
    assert "retry-after" not in first.headers


def test_a_refused_client_is_let_in_again_after_retry_after(make_api):
    api = make_api(requests_per_s=5, burst=2)
    while (refused := api.get("/v1/dlq")).status_code != 429:
        pass
    # The behaviour under test: waiting out Retry-After, as a client must. The limiter reads
    # Redis TIME (one clock for every replica), so no test clock can stand in for it.
    time.sleep(int(refused.headers["retry-after"]))
    assert api.get("/v1/dlq").status_code == 200


def test_clients_without_limits_of_their_own_get_the_service_defaults(app):
    response = app.http(app.client.api_key).get("/v1/dlq")
    assert response.headers["ratelimit-limit"] == DEFAULTS_ENV["PIXHOOK_CLIENT_BURST"]


def test_one_clients_limit_leaves_other_clients_alone(make_api):
    exhausted, other = make_api(requests_per_s=0.5, burst=1), make_api(requests_per_s=0.5, burst=1)
    assert [exhausted.get("/v1/dlq").status_code for _ in range(2)] == [200, 429]
    assert other.get("/v1/dlq").status_code == 200


def test_unauthenticated_requests_are_not_charged(make_api, app):
    anonymous = [app.http().get("/v1/dlq").status_code for _ in range(6)]
    assert set(anonymous) == {401}


def test_a_canceled_job_frees_its_place(make_api, held_image):
    url, _ = held_image
    api = make_api(**ROOMY, max_in_flight=1)
    job_id = api.post("/v1/jobs", json=held_job(url)).json()["id"]
    assert api.post("/v1/jobs", json=transform_job()).status_code == 429
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert api.post("/v1/jobs", json=transform_job()).status_code == 202


def test_the_service_default_quota_applies(app, held_image):
    url, _ = held_image
    limit = int(DEFAULTS_ENV["PIXHOOK_CLIENT_MAX_IN_FLIGHT"])
    api = app.http(app.client.api_key)
    # The default rate (2/s, bursts of 4) paces the submissions.
    statuses = []
    for _ in range(limit + 1):
        while (response := api.post("/v1/jobs", json=held_job(url))).status_code == 429:
            if error_of(response)["code"] == "TOO_MANY_JOBS":
                break
            time.sleep(int(response.headers["retry-after"]))  # as a paced client waits
        statuses.append(response.status_code)
    assert statuses == [202] * limit + [429]


def test_batch_items_count_as_jobs_in_flight(make_api, held_image):
    url, release = held_image
    api = make_api(**ROOMY, max_in_flight=2)
    items = [{"input": {"image": {"url": url}, "width": 20}} for _ in range(2)]
    batch = api.post("/v1/batches", json={"type": "image.transform", "items": items})
    assert batch.status_code == 202, batch.text
    refused = api.post("/v1/jobs", json=transform_job())
    assert error_of(refused)["code"] == "TOO_MANY_JOBS"


def test_a_batch_is_refused_while_the_quota_is_full(make_api, held_image):
    url, _ = held_image
    api = make_api(**ROOMY, max_in_flight=1)
    assert api.post("/v1/jobs", json=held_job(url)).status_code == 202
    batch = {"type": "image.transform", "items": [{"input": transform_job()["input"]}]}
    refused = api.post("/v1/batches", json=batch)
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "TOO_MANY_JOBS"
