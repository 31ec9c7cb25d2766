"""`Idempotency-Key` on `POST /v1/jobs` and `POST /v1/batches`, against the API in this process
(the keys live in Redis; no worker is involved)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.support.images import image_bytes
from tests.support.in_process import HasRedis, InProcessApi
from tests.support.jobs import error_of, transform_job


def key() -> dict[str, str]:
    return {"idempotency-key": str(uuid.uuid4())}


@pytest.fixture
def app(make_app: Callable[..., InProcessApi]) -> InProcessApi:
    return make_app()


@pytest.fixture
def api(app: InProcessApi) -> httpx.Client:
    return app.http(app.client.api_key)


def other_api(app: InProcessApi) -> httpx.Client:
    return app.http(app.new_client("idempotent").api_key)


def jobs_of(stack: HasRedis, job_id: str) -> list[dict[str, Any]]:
    """Every job record of the client that owns `job_id`, read from Redis."""
    with Redis.from_url(stack.redis_url) as redis:
        owner = json.loads(redis.get(f"pixhook:job:{job_id}") or b"{}")["client_id"]
        records = [
            json.loads(raw)
            for name in redis.scan_iter("pixhook:job:job_*", count=1000)
            if name.count(b":") == 2 and (raw := redis.get(name))
        ]
    return [record for record in records if record["client_id"] == owner]


def test_a_retried_post_answers_the_original_response(api):
    headers, body = key(), transform_job()
    first = api.post("/v1/jobs", json=body, headers=headers)
    again = api.post("/v1/jobs", json=body, headers=headers)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert first.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


def test_the_same_key_with_another_body_is_a_conflict(api):
    headers = key()
    assert api.post("/v1/jobs", json=transform_job(), headers=headers).status_code == 202
    conflict = api.post("/v1/jobs", json=transform_job(metadata={"n": 2}), headers=headers)
    assert conflict.status_code == 409
    assert error_of(conflict)["code"] == "IDEMPOTENCY_CONFLICT"
    assert error_of(conflict)["field"] == "Idempotency-Key"


def test_the_same_key_on_another_route_is_a_conflict(api):
    headers = key()
    assert api.post("/v1/jobs", json=transform_job(), headers=headers).status_code == 202
    batch = {"type": "image.transform", "items": [{"input": transform_job()["input"]}]}
    conflict = api.post("/v1/batches", json=batch, headers=headers)
    assert error_of(conflict)["code"] == "IDEMPOTENCY_CONFLICT"


def test_keys_belong_to_one_client(api, app):
    headers, body = key(), transform_job()
    mine = api.post("/v1/jobs", json=body, headers=headers)
    with other_api(app) as other:
        theirs = other.post("/v1/jobs", json=body, headers=headers)
    assert theirs.status_code == 202
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]


def test_parallel_posts_with_one_key_create_one_job(app):
    headers, body = key(), transform_job()
    with other_api(app) as api, ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(lambda _: api.post("/v1/jobs", json=body, headers=headers), range(20))
        )
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert [job["id"] for job in jobs_of(app, ids.pop())] == [responses[0].json()["id"]]
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1


def test_a_refused_request_releases_its_key(api):
    headers = key()
    refused = api.post("/v1/jobs", json=transform_job(type="image.nothing"), headers=headers)
    accepted = api.post("/v1/jobs", json=transform_job(), headers=headers)
    assert refused.status_code == 422
    assert accepted.status_code == 202
    assert "idempotent-replayed" not in accepted.headers


def test_a_retried_batch_answers_the_original_batch(api):
    headers = key()
    batch = {"type": "image.transform", "items": [{"input": transform_job()["input"]}]}
    first = api.post("/v1/batches", json=batch, headers=headers)
    again = api.post("/v1/batches", json=batch, headers=headers)
    assert first.status_code == 202, first.text
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["idempotent-replayed"] == "true"


def test_a_multipart_retry_with_a_new_boundary_is_replayed(api: httpx.Client) -> None:
    """httpx (like most clients) picks a new random boundary for every request."""
    headers = key()
    job = json.dumps({"type": "image.transform", "input": {"width": 50, "format": "png"}})

    def post() -> httpx.Response:
        files = {"image": ("photo.jpg", image_bytes(), "image/jpeg")}
        return api.post("/v1/jobs", data={"job": job}, files=files, headers=headers)

    first, again = post(), post()
    assert first.status_code == 202, first.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"


def test_a_key_longer_than_255_characters_is_refused(api):
    refused = api.post("/v1/jobs", json=transform_job(), headers={"idempotency-key": "k" * 256})
    assert refused.status_code == 422
    assert error_of(refused)["code"] == "INVALID_IDEMPOTENCY_KEY"
    assert error_of(refused)["field"] == "Idempotency-Key"


def test_an_empty_key_is_refused(api):
    refused = api.post("/v1/jobs", json=transform_job(), headers={"idempotency-key": ""})
    assert error_of(refused)["code"] == "INVALID_IDEMPOTENCY_KEY"
