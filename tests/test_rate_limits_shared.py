"""Per-client limits that hold across processes: two API replicas share one rate through Redis,
and a quota place comes back when the worker ends a job (or when its job vanished)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from service.cli.devstack import RunningStack, ServiceProcesses, free_port
from service.clients.store import ClientLimits, NewClient, client_store
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.stack_env import STACK_ENV

ROOMY = {"requests_per_s": 1000.0, "burst": 1000}


@pytest.fixture
def make_api(stack: RunningStack) -> Iterator[Callable[..., httpx.Client]]:
    """A client of its own with these limits (unset ones take the service's), and its API."""
    opened: list[httpx.Client] = []

    def create(**limits: Any) -> httpx.Client:
        made = asyncio.run(_create_client(stack.redis_url, ClientLimits(**limits)))
        api = httpx.Client(
            base_url=stack.api_url,
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


def held_job(url: str) -> dict[str, Any]:
    body = transform_job()
    body["input"]["image"] = {"url": url}
    return body


@pytest.fixture
def second_api(stack: RunningStack, tmp_path) -> Iterator[str]:
    """Another `pixhook api` replica against the same Redis."""
    port = free_port()
    env = {
        **STACK_ENV,
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


def test_two_api_replicas_share_one_limit(make_api, stack, second_api):
    here = make_api(requests_per_s=0.2, burst=4)
    there = httpx.Client(base_url=second_api, headers=dict(here.headers), timeout=30)
    with there:
        statuses = [api.get("/v1/dlq").status_code for _ in range(3) for api in (here, there)]
    assert statuses == [200, 200, 200, 200, 429, 429]


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


def test_a_place_held_by_a_vanished_job_is_reclaimed(make_api, stack):
    """A crash between reserving a place and storing the job leaves an id with no record."""
    api = make_api(**ROOMY, max_in_flight=1)
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    wait_for_status(api, job_id)
    with Redis.from_url(stack.redis_url) as redis:
        client_id = json.loads(redis.get(f"pixhook:job:{job_id}") or b"{}")["client_id"]
        redis.zadd(f"pixhook:client:{client_id}:unfinished", {"job_lost": time.time() - 3600})
    assert api.post("/v1/jobs", json=transform_job()).status_code == 202
