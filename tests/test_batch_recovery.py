"""A batch survives a worker restart and a Redis restart mid-way: it continues where it stopped,
and every item's result is written exactly once."""

from __future__ import annotations

import collections
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.cli.devstack import RunningStack, local_stack, wait_for
from tests.support.batches import SlowImages, results_of, wait_for_batch
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until

ITEMS = 24


@pytest.fixture(scope="module")
def persistent_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # A short grace: jobs that outlast it are cut short and handed back on SIGTERM.
    env = {**STACK_ENV, "PIXHOOK_JOB_CONCURRENCY": "3", "PIXHOOK_SHUTDOWN_GRACE": "1"}
    workdir = tmp_path_factory.mktemp("recovery")
    with local_stack(workdir, env, persistent_redis=True) as running:
        yield running


@pytest.fixture
def api(persistent_stack: RunningStack) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {persistent_stack.client.api_key}"}
    with httpx.Client(base_url=persistent_stack.api_url, headers=headers, timeout=30) as client:
        yield client


def start_batch(api: httpx.Client, images: SlowImages, count: int = ITEMS) -> str:
    items = [
        {"input": {"image": {"url": images.url(f"/item-{i}.jpg")}, "width": 20}}
        for i in range(count)
    ]
    response = api.post(
        "/v1/batches", json={"type": "image.transform", "items": items, "concurrency": 3}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_until_done(api: httpx.Client, batch_id: str, count: int) -> None:
    wait_until(
        lambda: api.get(f"/v1/batches/{batch_id}").json()["counts"]["succeeded"] >= count,
        30,
        f"{count} items to succeed",
    )


def assert_each_result_written_once(
    api: httpx.Client, batch: dict[str, Any], count: int = ITEMS
) -> None:
    assert batch["status"] == "completed"
    assert batch["counts"]["succeeded"] == count
    lines = results_of(api, batch)
    assert sorted(line["index"] for line in lines) == list(range(count))


def test_a_worker_restart_mid_batch_loses_and_repeats_nothing(persistent_stack, api, serve):
    images = serve(SlowImages(delay_s=0.2))
    batch_id = start_batch(api, images)
    wait_until_done(api, batch_id, 4)

    worker = persistent_stack.processes.processes["worker-jobs"]
    worker.send_signal(signal.SIGTERM)  # a rolling deploy: jobs in flight finish first
    worker.wait(30)
    persistent_stack.processes.start_worker("jobs")

    batch = wait_for_batch(api, batch_id)
    assert_each_result_written_once(api, batch)
    fetched = collections.Counter(request.request_line for request in images.requests)
    # Only an item in flight at the restart may have run twice.
    assert sum(count - 1 for count in fetched.values()) <= 3


def test_jobs_that_outlast_the_shutdown_grace_are_handed_back_at_once(persistent_stack, api, serve):
    images = serve(SlowImages(delay_s=3))  # longer than the 1 s grace
    batch_id = start_batch(api, images, count=6)
    wait_until(lambda: len(images.requests) >= 3, 10, "three items running")

    worker = persistent_stack.processes.processes["worker-jobs"]
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    persistent_stack.processes.start_worker("jobs")

    # Left claimed, the cut-short jobs would wait out arq's claim: job timeout + 40 s.
    batch = wait_for_batch(api, batch_id, timeout_s=25)
    assert_each_result_written_once(api, batch, count=6)
    log = (persistent_stack.files_dir.parent / "logs" / "worker-jobs.log").read_text()
    assert "handed back 3 jobs cut short by the shutdown" in log


def test_jobs_of_a_killed_worker_are_handed_back_within_seconds(persistent_stack, api, serve):
    images = serve(SlowImages(delay_s=0.5))
    batch_id = start_batch(api, images, count=9)
    wait_until(lambda: len(images.requests) >= 3, 10, "three items running")

    persistent_stack.processes.processes["worker-jobs"].kill()  # no shutdown, claims left
    persistent_stack.processes.processes["worker-jobs"].wait(10)
    killed_at = time.monotonic()
    persistent_stack.processes.start_worker("jobs")

    # arq alone would hold the killed worker's jobs for the job timeout + 40 s (340 s).
    batch = wait_for_batch(api, batch_id, timeout_s=40)
    assert time.monotonic() - killed_at < 30
    assert_each_result_written_once(api, batch, count=9)


def test_redis_away_for_seconds_mid_batch_continues_where_it_stopped(persistent_stack, api, serve):
    images = serve(SlowImages(delay_s=0.2))
    batch_id = start_batch(api, images)
    wait_until_done(api, batch_id, 4)

    persistent_stack.redis.stop()
    time.sleep(3)  # the outage under test: longer than the Redis client's own retries
    persistent_stack.redis.start()
    wait_for(lambda: _ready(persistent_stack.api_url), "the API", 30)

    batch = wait_for_batch(api, batch_id)
    # Every process rode it out: the workers waited for Redis and started again.
    assert persistent_stack.processes.exited() == {}
    log = (persistent_stack.files_dir.parent / "logs" / "worker-jobs.log").read_text()
    assert "lost Redis" in log
    assert_each_result_written_once(api, batch)
    fetched = collections.Counter(request.request_line for request in images.requests)
    assert sum(count - 1 for count in fetched.values()) <= 3
    raw = httpx.get(batch["results"]["url"]).text
    assert len(raw.splitlines()) == len({json.loads(line)["index"] for line in raw.splitlines()})


def _ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
