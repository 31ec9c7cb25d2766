"""Job, provider and queue figures on `/metrics`, read from the real API as Prometheus would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from service.cli.devstack import RunningStack, free_port, local_stack
from service.keys import JOB_QUEUE
from service.storage import S3Storage, StorageUnavailable, s3_client
from tests.support.jobs import transform_job, wait_for_status
from tests.support.openai_standin import API_KEY, Answer, OpenAIStandIn
from tests.support.raw_servers import Response, Scripted
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, openai_standin: OpenAIStandIn
) -> Iterator[RunningStack]:
    """This module's own stack: one job at a time, so a second job has to wait in the queue."""
    env = {
        **STACK_ENV,
        "PIXHOOK_JOB_CONCURRENCY": "1",
        "PIXHOOK_OPENAI_BASE_URL": openai_standin.base_url,
        "PIXHOOK_OPENAI_API_KEY": API_KEY,
        "PIXHOOK_PROVIDER_BACKOFF": "50ms",
    }
    with local_stack(tmp_path_factory.mktemp("metrics"), env) as running:
        yield running


def samples(api: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(read: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return read.get((name, frozenset(labels.items())), 0.0)


def run(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def test_finished_jobs_are_counted_by_type_and_outcome(api, serve):
    not_an_image = serve(Scripted(lambda n: Response(200, {"content-type": "image/jpeg"}, b"no")))
    before = samples(api)

    assert run(api, transform_job())["status"] == "succeeded"
    failing = transform_job()
    failing["input"]["image"] = {"url": not_an_image.url("/fake.jpg")}
    failed = run(api, failing)

    after = samples(api)
    assert failed["error"]["code"] == "INVALID_IMAGE"
    for name, labels, added in [
        ("pixhook_jobs_finished_total", {"outcome": "succeeded"}, 1),
        ("pixhook_jobs_finished_total", {"outcome": "failed"}, 1),
        ("pixhook_job_failures_total", {"code": "INVALID_IMAGE"}, 1),
        ("pixhook_job_run_seconds_count", {}, 2),
    ]:
        labels["type"] = "image.transform"
        assert value(after, name, **labels) - value(before, name, **labels) == added, name


def test_run_and_wait_histograms_count_every_job(api):
    before = samples(api)

    run(api, transform_job())

    after = samples(api)
    labels = {"type": "image.transform"}
    for name in ("pixhook_job_run_seconds", "pixhook_job_wait_seconds"):
        count = value(after, f"{name}_count", **labels)
        assert count - value(before, f"{name}_count", **labels) == 1
        assert value(after, f"{name}_bucket", le="+Inf", **labels) == count
        assert value(after, f"{name}_bucket", le="300.0", **labels) == count


def start_held_job(api: httpx.Client, url: str) -> None:
    """A job fetching `url`, returning once it runs: it keeps this stack's one job slot busy."""
    busy = transform_job()
    busy["input"]["image"] = {"url": url}
    job_id = api.post("/v1/jobs", json=busy).json()["id"]
    wait_until(
        lambda: api.get(f"/v1/jobs/{job_id}").json()["status"] == "running",
        10,
        f"{job_id} to run",
    )


def test_oldest_queued_job_age_grows_while_the_worker_is_busy(api, held_image):
    url, release = held_image
    start_held_job(api, url)
    waiting = api.post("/v1/jobs", json=transform_job()).json()["id"]

    # It grows while the job waits: the gauge reaching 0.4 s is the behaviour asserted.
    wait_until(
        lambda: value(samples(api), "pixhook_jobs_oldest_queued_age_seconds") >= 0.4,
        10,
        "the waiting job's age to pass 0.4 s",
    )
    release.set()

    assert wait_for_status(api, waiting)["status"] == "succeeded"
    assert value(samples(api), "pixhook_jobs_oldest_queued_age_seconds") == 0


def test_the_job_gauges_leave_out_the_workers_own_cron_entries(api, stack, held_image):
    """Issue #15 item 23: arq queues the jobs worker's housekeeping in the jobs queue, and
    `pixhook_jobs_queued` counted it as a job (KEDA scaled on it); a busy worker's housekeeping,
    waiting its turn, also read as the oldest job waiting."""
    url, release = held_image
    start_held_job(api, url)
    redis = Redis.from_url(stack.redis_url)
    wait_until(
        lambda: overdue_cron_entries(redis, by_s=0.5),
        10,
        "cron entries overdue, behind the one job the worker takes",
    )

    read = samples(api)
    release.set()
    redis.close()

    assert value(read, "pixhook_jobs_queued") == 1
    assert value(read, "pixhook_jobs_oldest_queued_age_seconds") == 0


def overdue_cron_entries(redis: Redis, by_s: float) -> list[bytes]:
    overdue_at = (time.time() - by_s) * 1000
    entries = cast(list[bytes], redis.zrangebyscore(JOB_QUEUE, "-inf", overdue_at))
    return [entry for entry in entries if entry.startswith(b"cron:")]


def test_provider_429_and_latency_are_counted_by_model(api, openai_standin):
    openai_standin.script([Answer(429, {"retry-after-ms": "50"})])
    labels = {"provider": "openai", "model": "gpt-image-1"}
    before = samples(api)

    prompt = {"prompt": "a red square", "width": 256, "height": 256}
    job = run(api, {"type": "image.generate", "input": prompt})

    after = samples(api)
    assert job["status"] == "succeeded", job
    assert (
        value(after, "pixhook_provider_throttled_total", **labels)
        - value(before, "pixhook_provider_throttled_total", **labels)
        == 1
    )
    count = "pixhook_provider_request_seconds_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 1


def test_running_batches_are_a_gauge(api):
    assert ("pixhook_batches_running", frozenset()) in samples(api)


def test_a_storage_outage_is_an_error_of_its_operation():
    """The evidence `pixhook_storage_errors_total{operation}` is counted from."""
    storage = S3Storage(s3_client(f"http://127.0.0.1:{free_port()}", "us-east-1"), "b", "", 60)

    with pytest.raises(StorageUnavailable) as raised:
        asyncio.run(storage.put("a/b.png", b"x"))

    assert (raised.value.code, raised.value.operation) == ("STORAGE_UNAVAILABLE", "put")
