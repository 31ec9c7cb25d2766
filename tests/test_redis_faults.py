"""The API while Redis is gone or full (issue 15, item 23).

The API here reaches its Redis through a `TcpProxy`, so a test can make Redis vanish at an exact
moment of a request (the proxy recognises the idempotency record by its `:idempotency:` key), or
fill it (`maxmemory` 1 byte under `noeviction`, as production runs it). No workers run: what is
tested is what the API answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis

from service.cli.devstack import EmbeddedRedis, ServiceProcesses, free_port, stack_environment
from service.clients.store import client_store
from tests.support.jobs import error_of, transform_job
from tests.support.tcp_proxy import TcpProxy

GENERATE = {"type": "image.generate", "input": {"prompt": "a red chair"}}
IDEMPOTENCY_RECORD = b":idempotency:"


@dataclass(frozen=True)
class FaultyStack:
    api: httpx.Client
    proxy: TcpProxy
    redis: Redis
    job_id: str  # made while Redis was well
    files: Path  # local storage's root


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStack]:
    workdir: Path = tmp_path_factory.mktemp("redis-faults")
    redis = EmbeddedRedis(workdir / "redis").start()
    proxy = TcpProxy(redis.port).start()
    port = free_port()
    env = stack_environment(proxy.url("redis", "/0"), workdir / "files", f"http://127.0.0.1:{port}")
    processes = ServiceProcesses(env, workdir / "logs")
    try:
        processes.start_api(port)
        api_key = asyncio.run(_new_api_key(redis.url))
        headers = {"authorization": f"Bearer {api_key}"}
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as api,
            Redis.from_url(redis.url) as direct,
        ):
            # Loads the idempotency scripts into Redis, so a cut lands on the command it names.
            warm = api.post("/v1/jobs", json=GENERATE, headers={"Idempotency-Key": "warm-up"})
            assert warm.status_code == 202, warm.text
            yield FaultyStack(api, proxy, direct, warm.json()["id"], workdir / "files")
    finally:
        processes.stop()
        proxy.close()
        redis.stop()


async def _new_api_key(redis_url: str) -> str:
    async with client_store(redis_url) as store:
        return (await store.create("redis-faults")).api_key


@pytest.fixture(autouse=True)
def redis_back_after_each_test(faulty: FaultyStack) -> Iterator[None]:
    yield
    faulty.proxy.restore()


@pytest.fixture
def redis_gone(faulty: FaultyStack) -> None:
    faulty.proxy.cut()


@pytest.fixture
def redis_full(faulty: FaultyStack) -> Iterator[None]:
    faulty.redis.config_set("maxmemory", "1")  # noeviction, the default: every write refused
    yield
    faulty.redis.config_set("maxmemory", "0")


@pytest.mark.parametrize("fault", ["redis_gone", "redis_full"])
def test_a_503_says_when_to_retry(faulty, fault, request):
    """A 503 carried no Retry-After, where every 429 does."""
    request.getfixturevalue(fault)

    response = faulty.api.post("/v1/jobs", json=GENERATE)

    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After", "").isdigit()


@pytest.mark.parametrize("fault", ["redis_gone", "redis_full"])
def test_a_503_names_redis(faulty, fault, request):
    """It said "storage is unavailable", and the docs call S3 the storage."""
    request.getfixturevalue(fault)

    response = faulty.api.post("/v1/jobs", json=GENERATE)

    assert error_of(response)["code"] == "SERVICE_UNAVAILABLE"
    assert "Redis" in error_of(response)["message"]


def test_reads_keep_answering_while_redis_is_full(faulty, redis_full):
    """The rate limiter's write made every authenticated GET a 503 while /readyz said ready."""
    response = faulty.api.get(f"/v1/jobs/{faulty.job_id}")

    assert response.status_code == 200, response.text
    assert faulty.api.get("/readyz").status_code == 200


def test_a_key_whose_request_redis_cut_short_is_free_once_redis_is_back(faulty):
    """The claim's release died with Redis: retries answered 409 IDEMPOTENCY_IN_PROGRESS until
    the claim expired, a minute later."""
    key = {"Idempotency-Key": "cut-before-the-job"}
    faulty.proxy.cut_at(IDEMPOTENCY_RECORD, answered=True)  # Redis dies once the key is claimed
    assert faulty.api.post("/v1/jobs", json=GENERATE, headers=key).status_code == 503
    faulty.proxy.restore()

    retried = faulty.api.post("/v1/jobs", json=GENERATE, headers=key)

    assert retried.status_code == 202, retried.text


def test_a_job_made_before_redis_died_is_answered_and_replayed(faulty):
    """Redis died after the job was stored but before its response was kept: the caller got a
    503 for a job that existed, and its retry a 409, then (a minute later) a second job."""
    key = {"Idempotency-Key": "cut-after-the-job"}
    faulty.proxy.cut_at(IDEMPOTENCY_RECORD, 2, answered=False)  # the record's second write
    first = faulty.api.post("/v1/jobs", json=GENERATE, headers=key)
    faulty.proxy.restore()

    retried = faulty.api.post("/v1/jobs", json=GENERATE, headers=key)

    assert first.status_code == 202, first.text
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] == first.json()["id"]
    assert retried.headers["Idempotent-Replayed"] == "true"


def test_a_storage_failure_while_redis_is_gone_too_is_still_a_503(faulty):
    """Answering STORAGE_UNAVAILABLE counts it in Redis: with Redis gone as well, that count
    turned the 503 into a 500."""
    faulty.files.mkdir(exist_ok=True)
    faulty.files.rename(faulty.files.with_name("files-away"))
    faulty.files.write_bytes(b"")  # a file where the directory was: every write fails
    faulty.proxy.cut_at(b"storage_errors", answered=False)
    try:
        response = faulty.api.post("/v1/jobs", json=transform_job())
    finally:
        faulty.files.unlink()
        faulty.files.with_name("files-away").rename(faulty.files)

    assert (response.status_code, error_of(response)["code"]) == (503, "STORAGE_UNAVAILABLE")
    assert response.headers.get("Retry-After", "").isdigit()
