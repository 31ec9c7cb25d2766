"""Identical `image.analyze` work in flight at once is paid for once (tasks/single_flight.py),
against the OpenAI stand-in, with the API and two jobs workers in this process."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from service.cli.devstack import RunningStack, local_stack
from service.keys import KEYS
from service.providers import vision
from service.tasks import analyze as analyze_task
from tests.conftest import provider_env
from tests.support.batches import wait_for_batch
from tests.support.in_process import InProcessApi
from tests.support.jobs import wait_for_status
from tests.support.openai_standin import PRODUCT, Answer, OpenAIStandIn
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until


@pytest.fixture
def app(app_with_workers: InProcessApi) -> InProcessApi:
    app_with_workers.start_worker("jobs")  # a second one: the jobs spread over two workers
    return app_with_workers


@pytest.fixture
def api(app: InProcessApi) -> httpx.Client:
    return app.http(app.client.api_key)


def photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (240, 160), (seed % 256, 60, (seed * 11) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


def analyze_input(image: bytes, **fields: Any) -> dict[str, Any]:
    encoded = base64.b64encode(image).decode()
    return {"image": {"base64": encoded}, "provider": "openai", **fields}


def submit(api: httpx.Client, image: bytes, **fields: Any) -> str:
    body = {"type": "image.analyze", "input": analyze_input(image, **fields)}
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_a_hundred_copies_in_one_batch_make_one_provider_call(api, openai_standin):
    # Slow enough that, without single flight, every job running at once would call too.
    openai_standin.script([Answer(delay_s=0.5)])
    item = {"input": analyze_input(photo(1), model="standin-flight-100")}
    created = api.post("/v1/batches", json={"type": "image.analyze", "items": [item] * 100})
    assert created.status_code == 202, created.text

    batch = wait_for_batch(api, created.json()["id"], timeout_s=120)

    assert batch["counts"]["succeeded"] == 100
    assert openai_standin.paid_calls("standin-flight-100") == 1


def test_jobs_waiting_on_the_call_get_its_answer_marked_cached(api, openai_standin):
    openai_standin.script([Answer(delay_s=0.5)])
    ids = [submit(api, photo(2), model="standin-flight-shared") for _ in range(6)]

    jobs = [wait_for_status(api, job_id) for job_id in ids]

    assert {job["status"] for job in jobs} == {"succeeded"}
    assert all(job["output"]["attributes"] == PRODUCT for job in jobs)
    assert sorted(job["output"]["provider"]["cached"] for job in jobs) == [False] + [True] * 5
    assert openai_standin.paid_calls("standin-flight-shared") == 1


def test_a_failed_call_lets_the_next_waiting_job_try(api, openai_standin):
    """An error is not shared: the holder lets go at once, and one waiting job asks again."""
    openai_standin.script([Answer(status=400, delay_s=0.5)])
    ids = [submit(api, photo(7), model="standin-flight-refused") for _ in range(3)]

    jobs = [wait_for_status(api, job_id) for job_id in ids]

    assert sorted(job["status"] for job in jobs) == ["failed", "succeeded", "succeeded"]
    assert len(openai_standin.requests) == 2


def test_other_models_and_brand_lists_are_asked_separately(api, openai_standin):
    openai_standin.script([Answer(delay_s=0.3)] * 4)
    image = photo(3)
    asks: list[dict[str, Any]] = [{"model": "standin-flight-a"}, {"model": "standin-flight-b"}]
    asks += [{"model": "standin-flight-a", "known_brands": ["Acme"]}]
    ids = [submit(api, image, **ask) for ask in asks for _ in range(4)]

    jobs = [wait_for_status(api, job_id) for job_id in ids]

    assert {job["status"] for job in jobs} == {"succeeded"}
    assert openai_standin.paid_calls("standin-flight-a") == 2  # without and with brands
    assert openai_standin.paid_calls("standin-flight-b") == 1


def test_a_waiter_takes_over_from_a_holder_that_died(app, api, openai_standin: OpenAIStandIn):
    """A worker killed mid-call leaves its lease behind, renewed by nobody: the next job with the
    same photo waits it out, then asks the provider itself."""
    image, model = photo(4), "standin-flight-orphan"
    settings = app.settings
    jpeg = vision.prepare_image(
        image, settings.providers.vision_max_side, settings.limits.max_image_pixels
    )
    params = analyze_task.parse_input(
        analyze_task.AnalyzeInput(provider="openai", model=model), settings
    )
    lease = KEYS.flight(analyze_task._cache_key(jpeg, params, None))
    with redis.Redis.from_url(app.redis_url) as connection:
        connection.set(lease, "a-worker-that-died", px=1500)
    planted = time.monotonic()
    openai_standin.script([])

    job = wait_for_status(api, submit(api, image, model=model))

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["provider"]["cached"] is False
    assert openai_standin.paid_calls(model) == 1
    [request] = openai_standin.requests
    assert request["at"] - planted >= 1.4  # not before the dead holder's lease lapsed


def test_a_slow_call_keeps_its_lease_and_is_still_made_once(make_app, openai_standin):
    """The holder renews its lease while it works: a call longer than the lease is not taken
    over by the jobs waiting on it."""
    # Renewed every third of the lease: a holder starved of CPU for two thirds of it (a loaded
    # 2-core machine running the suite) would lose it, so it is not cut finer than a second.
    app = make_app(**provider_env(openai_standin), PIXHOOK_FLIGHT_LEASE="1s")
    app.start_worker("jobs")
    api = app.http(app.client.api_key)
    openai_standin.script([Answer(delay_s=3)])

    ids = [submit(api, photo(5), model="standin-flight-slow") for _ in range(4)]
    jobs = [wait_for_status(api, job_id) for job_id in ids]

    assert {job["status"] for job in jobs} == {"succeeded"}
    assert openai_standin.paid_calls("standin-flight-slow") == 1


@pytest.fixture
def killable_stack(tmp_path: Path, openai_standin: OpenAIStandIn) -> Iterator[RunningStack]:
    """One job at a time per worker, so that a second worker's job is the only one it runs."""
    env = {**STACK_ENV, **provider_env(openai_standin)}
    # Long enough that a worker starved of CPU by the rest of the suite still renews it in time.
    env |= {"PIXHOOK_FLIGHT_LEASE": "3s", "PIXHOOK_JOB_CONCURRENCY": "1"}
    # The first call must outlast the second worker's start, however slow: not time out and retry.
    env |= {"PIXHOOK_PROVIDER_TIMEOUT": "30s"}
    with local_stack(tmp_path, env) as running:
        yield running


def test_a_job_takes_over_from_a_worker_killed_mid_call(killable_stack, openai_standin):
    """A worker killed while its provider call runs holds its lease only until the lease lapses:
    the job waiting on another worker for the same photo then makes the call itself."""
    image, model = photo(6), "standin-flight-killed"
    openai_standin.script([Answer(delay_s=8)])  # the call the killed worker never sees end
    processes = killable_stack.processes
    headers = {"authorization": f"Bearer {killable_stack.client.api_key}"}
    with httpx.Client(base_url=killable_stack.api_url, headers=headers, timeout=30) as api:
        submit(api, image, model=model)
        wait_until(lambda: openai_standin.requests, 10, "the first job's provider call")
        processes.start_worker("jobs")  # the first worker is busy: the next job runs here
        waiting = submit(api, image, model=model)

        def running() -> bool:
            return bool(api.get(f"/v1/jobs/{waiting}").json()["status"] == "running")

        wait_until(running, 20, "the second job to wait on the first one's call")
        time.sleep(0.5)  # what the test looks for is a call that does not happen
        assert len(openai_standin.requests) == 1

        processes.processes["worker-jobs"].kill()  # no shutdown: its lease is left behind
        processes.processes["worker-jobs"].wait(10)
        killed_at = time.monotonic()
        job = wait_for_status(api, waiting, timeout_s=30)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["provider"]["cached"] is False
    [taken_over] = [r for r in openai_standin.requests if r["at"] > killed_at]
    assert taken_over["body"]["model"] == model
