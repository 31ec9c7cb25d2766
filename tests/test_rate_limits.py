"""Per-client request rates and in-flight job quotas, over real HTTP, shared through Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from service.clients import ClientLimits, NewClient, client_store
from service.devstack import RunningStack, ServiceProcesses, free_port, local_stack
from tests.conftest import STACK_ENV
from tests.helpers import error_of, transform_job, wait_for_status

# Tight service defaults, so that the stack's own client runs into them at once.
DEFAULTS_ENV = {
    "PIXHOOK_CLIENT_REQUESTS_PER_SECOND": "2",
    "PIXHOOK_CLIENT_BURST": "4",
    "PIXHOOK_CLIENT_MAX_IN_FLIGHT": "5",
}
ROOMY = {"requests_per_s": 1000.0, "burst": 1000}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    env = {**STACK_ENV, **DEFAULTS_ENV}
    with local_stack(tmp_path_factory.mktemp("limits"), env) as running:
        yield running


@pytest.fixture
def make_api(stack: RunningStack) -> Iterator[Callable[..., httpx.Client]]:
    """A client of its own with these limits (unset ones take the service's), and its API."""
    opened: list[httpx.Client] = []

    def create(base_url: str | None = None, **limits: Any) -> httpx.Client:
        made = asyncio.run(_create_client(stack.redis_url, ClientLimits(**limits)))
        api = httpx.Client(
            base_url=base_url or stack.api_url,
            headers={"authorization": f"Bearer {made.api_key}"},
            timeout=30,
        )
        opened.append(api)
        return api

    yield create
    for api in opened:
        api.close()


async def _create_client(redis_url: str, limits: ClientLimits) -> NewClient:
    async with client_store(redis_url) as store:
        return await store.create("limited", limits)


@pytest.fixture
def second_api(stack: RunningStack, tmp_path) -> Iterator[str]:
    """Another `pixhook api` replica against the same Redis."""
    port = free_port()
    env = {
        **STACK_ENV,
        **DEFAULTS_ENV,
        "PIXHOOK_REDIS_URL": stack.redis_url,
        "PIXHOOK_STORAGE": f"local:{stack.files_dir}",
        "PIXHOOK_SECRET_KEY": "a-second-replica-secret",
        "PIXHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    processes = ServiceProcesses(env, tmp_path / "logs")
    try:
        processes.start_api(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop()


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
    time.sleep(int(refused.headers["retry-after"]))
    assert api.get("/v1/dlq").status_code == 200


def test_clients_without_limits_of_their_own_get_the_service_defaults(stack):
    headers = {"authorization": f"Bearer {stack.client.api_key}"}
    response = httpx.get(f"{stack.api_url}/v1/dlq", headers=headers)
    assert response.headers["ratelimit-limit"] == DEFAULTS_ENV["PIXHOOK_CLIENT_BURST"]


def test_one_clients_limit_leaves_other_clients_alone(make_api):
    exhausted, other = make_api(requests_per_s=0.5, burst=1), make_api(requests_per_s=0.5, burst=1)
    assert [exhausted.get("/v1/dlq").status_code for _ in range(2)] == [200, 429]
    assert other.get("/v1/dlq").status_code == 200


def test_two_api_replicas_share_one_limit(make_api, stack, second_api):
    here = make_api(requests_per_s=0.2, burst=4)
    there = httpx.Client(base_url=second_api, headers=dict(here.headers), timeout=30)
    with there:
        statuses = [api.get("/v1/dlq").status_code for _ in range(3) for api in (here, there)]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_unauthenticated_requests_are_not_charged(make_api, stack):
    anonymous = [httpx.get(f"{stack.api_url}/v1/dlq").status_code for _ in range(6)]
    assert set(anonymous) == {401}


def test_jobs_beyond_the_in_flight_quota_are_refused_until_one_ends(make_api, held_image):
    url, release = held_image
    api = make_api(**ROOMY, max_in_flight=2)
    held = [api.post("/v1/jobs", json=held_job(url)) for _ in range(2)]
    refused = api.post("/v1/jobs", json=transform_job())
    assert [r.status_code for r in held] == [202, 202]
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "TOO_MANY_JOBS"
    assert int(refused.headers["retry-after"]) >= 1
    release.set()
    for response in held:
        wait_for_status(api, response.json()["id"])
    assert api.post("/v1/jobs", json=transform_job()).status_code == 202


def test_a_canceled_job_frees_its_place(make_api, held_image):
    url, _ = held_image
    api = make_api(**ROOMY, max_in_flight=1)
    job_id = api.post("/v1/jobs", json=held_job(url)).json()["id"]
    assert api.post("/v1/jobs", json=transform_job()).status_code == 429
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert api.post("/v1/jobs", json=transform_job()).status_code == 202


def test_the_service_default_quota_applies(stack, held_image):
    url, _ = held_image
    headers = {"authorization": f"Bearer {stack.client.api_key}"}
    limit = int(DEFAULTS_ENV["PIXHOOK_CLIENT_MAX_IN_FLIGHT"])
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as api:
        # The default rate (2/s, bursts of 4) paces the submissions.
        statuses = []
        for _ in range(limit + 1):
            while (response := api.post("/v1/jobs", json=held_job(url))).status_code == 429:
                if error_of(response)["code"] == "TOO_MANY_JOBS":
                    break
                time.sleep(int(response.headers["retry-after"]))
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


def test_a_place_held_by_a_vanished_job_is_reclaimed(make_api, stack):
    """A crash between reserving a place and storing the job leaves an id with no record."""
    api = make_api(**ROOMY, max_in_flight=1)
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    wait_for_status(api, job_id)
    with Redis.from_url(stack.redis_url) as redis:
        client_id = json.loads(redis.get(f"pixhook:job:{job_id}") or b"{}")["client_id"]
        redis.zadd(f"pixhook:client:{client_id}:unfinished", {"job_lost": time.time() - 3600})
    assert api.post("/v1/jobs", json=transform_job()).status_code == 202
