"""`GET /v1/jobs` and `GET /v1/batches`: a client's own jobs and batches, newest first, paged
with an opaque cursor, filtered by status, type, reference, batch and creation time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.ids import new_id
from service.jobs.model import Job
from service.jobs.store import JobStore
from tests.support.batches import transform_item
from tests.support.in_process import InProcessApi
from tests.support.waiting import wait_until


@pytest.fixture
def app(make_app: Callable[..., InProcessApi]) -> InProcessApi:
    """No worker runs: jobs stay queued unless canceled, so their statuses are the test's."""
    return make_app()


@pytest.fixture
def api(app: InProcessApi) -> httpx.Client:
    return app.http(app.client.api_key)


def submit(api: httpx.Client, reference: str | None = None, **job: Any) -> dict[str, Any]:
    body = {"type": "image.transform", **transform_item(), **job}
    if reference is not None:
        body["reference"] = reference
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    made: dict[str, Any] = response.json()
    return made


def listed(api: httpx.Client, path: str = "/v1/jobs", **params: Any) -> list[str]:
    """The ids of every page, followed to the end."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        ids += [item["id"] for item in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the pages never ended")


def store_item(app: InProcessApi, batch_id: str, index: int, reference: str) -> str:
    """A job of the batch with a reference, stored as `launch_job` stores the items it starts."""
    job = Job(
        id=new_id("job"),
        type="image.transform",
        client_id=app.client.client.id,
        input={"width": 40},
        input_key=None,
        created_at=time.time(),
        reference=reference,
        batch_id=batch_id,
        batch_index=index,
    )

    async def create() -> None:
        async with AsyncRedis.from_url(app.redis_url) as redis:
            await JobStore(redis, retention_s=app.settings.jobs.retention_s).create(job)

    asyncio.run(create())
    return job.id


def error_of(response: httpx.Response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


def test_pages_of_jobs_hold_every_job_once_newest_first(api):
    jobs = [submit(api)["id"] for _ in range(12)]

    first = api.get("/v1/jobs", params={"limit": 5}).json()
    ids = listed(api, limit=5)

    assert [job["id"] for job in first["data"]] == jobs[::-1][:5]
    assert first["data"][0]["status"] == "queued"
    assert first["next_cursor"] is not None
    assert ids == jobs[::-1]


def test_jobs_created_in_the_same_microsecond_are_split_across_pages_without_a_loss(app, api):
    jobs = [submit(api)["id"] for _ in range(7)]
    with Redis.from_url(app.redis_url) as redis:
        # As two API replicas might: several jobs scored with one microsecond.
        redis.zadd(f"pixhook:jobs:index:client:{app.client.client.id}", dict.fromkeys(jobs, 10**15))

    assert sorted(listed(api, limit=2)) == sorted(jobs)
    assert len(listed(api, limit=3)) == 7


def test_a_status_filter_takes_one_or_several_statuses(api):
    queued = submit(api)["id"]
    canceled = submit(api)["id"]
    assert api.post(f"/v1/jobs/{canceled}/cancel").status_code == 200

    assert listed(api, status="canceled") == [canceled]
    assert listed(api, status="queued") == [queued]
    assert listed(api, status="queued,canceled") == [canceled, queued]
    assert listed(api, status=["canceled", "queued"]) == [canceled, queued]
    assert listed(api, status="succeeded") == []


def test_a_type_filter_keeps_jobs_of_that_type(api):
    transform = submit(api)["id"]
    analyze = submit(api, type="image.analyze", input={"image": transform_item()["input"]["image"]})

    assert listed(api, type="image.analyze") == [analyze["id"]]
    assert listed(api, type="image.transform") == [transform]


def test_a_reference_finds_its_jobs_and_only_them(api):
    first = submit(api, reference="SKU-42")["id"]
    submit(api, reference="SKU-43")
    submit(api)
    again = submit(api, reference="SKU-42")["id"]

    page = api.get("/v1/jobs", params={"reference": "SKU-42"}).json()

    assert [job["id"] for job in page["data"]] == [again, first]
    assert {job["reference"] for job in page["data"]} == {"SKU-42"}
    assert listed(api, reference="SKU-4") == []


def test_a_reference_is_looked_up_in_its_own_index(app, api):
    wanted = submit(api, reference="SKU-7")["id"]
    for _ in range(3):
        submit(api)
    with Redis.from_url(app.redis_url) as redis:
        # Were the reference found by walking the client's jobs, it would now be lost.
        redis.delete(f"pixhook:jobs:index:client:{app.client.client.id}")

    assert listed(api, reference="SKU-7") == [wanted]


def test_a_reference_finds_items_of_batches_too(app, api):
    batch = api.post("/v1/batches", json={"type": "image.transform", "items": [transform_item()]})
    item = store_item(app, batch.json()["id"], 1, "SKU-9")
    single = submit(api, reference="SKU-9")["id"]

    page = api.get("/v1/jobs", params={"reference": "SKU-9"}).json()["data"]

    assert [job["id"] for job in page] == [single, item]
    assert page[1]["batch"] == {"id": batch.json()["id"], "index": 1}
    assert page[1]["reference"] == "SKU-9"


def test_a_batch_filter_lists_the_items_of_that_batch(api):
    before = submit(api)["id"]
    items = [transform_item(width=10 + i) for i in range(3)]
    batch = api.post("/v1/batches", json={"type": "image.transform", "items": items}).json()
    after = submit(api)["id"]

    found = api.get("/v1/jobs", params={"batch": batch["id"]}).json()["data"]

    assert sorted(job["batch"]["index"] for job in found) == [0, 1, 2]
    assert before not in [job["id"] for job in found]
    assert after not in [job["id"] for job in found]
    assert len(listed(api)) == 5


def test_filters_combine(app, api):
    wanted = submit(api, reference="SKU-1")["id"]
    canceled = submit(api, reference="SKU-1")["id"]
    api.post(f"/v1/jobs/{canceled}/cancel")
    submit(api, reference="SKU-2")
    batch = api.post("/v1/batches", json={"type": "image.transform", "items": [transform_item()]})
    batch_id = batch.json()["id"]
    item = store_item(app, batch_id, 1, "SKU-1")

    assert listed(api, reference="SKU-1", status="queued", type="image.transform") == [
        item,
        wanted,
    ]
    assert listed(api, reference="SKU-1", status="canceled") == [canceled]
    assert listed(api, reference="SKU-1", batch=batch_id, status="queued") == [item]
    assert listed(api, reference="SKU-2", batch=batch_id) == []
    assert listed(api, reference="SKU-1", type="image.analyze") == []
    assert listed(api, batch=batch_id, created_before="0") == []


def test_a_created_range_includes_its_start_and_excludes_its_end(api):
    jobs = [submit(api) for _ in range(4)]
    everything = listed(api)

    for job in jobs:
        moment = job["created_at"]  # to the millisecond: at or before the job's own time
        after = listed(api, created_after=moment)
        before = listed(api, created_before=moment)

        assert job["id"] in after
        assert job["id"] not in before
        assert sorted(after + before) == sorted(everything)


def test_a_range_starting_at_a_jobs_exact_time_holds_it_and_one_ending_there_does_not(app, api):
    job = submit(api)["id"]
    with Redis.from_url(app.redis_url) as redis:
        created_at = repr(json.loads(redis.get(f"pixhook:job:{job}"))["created_at"])

    assert listed(api, created_after=created_at) == [job]
    assert listed(api, created_before=created_at) == []


def test_created_times_read_unix_seconds_and_durations_ago(api):
    job = submit(api)["id"]
    soon = str(int(time.time()) + 60)

    assert listed(api, created_after="1h") == [job]
    assert listed(api, created_before="1h") == []
    assert listed(api, created_after=soon) == []
    assert listed(api, created_before=soon, created_after="0") == [job]


def test_another_clients_jobs_and_batches_never_appear(app, api):
    submit(api, reference="SKU-5")
    batch = api.post("/v1/batches", json={"type": "image.transform", "items": [transform_item()]})
    other = app.http(app.new_client("other").api_key)

    assert listed(other) == []
    assert listed(other, reference="SKU-5") == []
    assert listed(other, path="/v1/batches") == []
    refused = other.get("/v1/jobs", params={"batch": batch.json()["id"]})
    assert error_of(refused) == (404, "BATCH_NOT_FOUND", "batch")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "yesterday"}, "cursor"),
        ({"cursor": "12:job_"}, "cursor"),
        ({"status": "done"}, "status"),
        ({"status": "queued,"}, "status"),
        ({"type": "image.resize"}, "type"),
        ({"reference": ""}, "reference"),
        ({"reference": "SKU\n1"}, "reference"),
        ({"reference": "x" * 201}, "reference"),
        ({"batch": "bat_"}, "batch"),
        ({"batch": "bat_01m98f6de55zh7n5yyrt0n7ba8:items"}, "batch"),
        ({"created_after": "last week"}, "created_after"),
        ({"created_before": "nan"}, "created_before"),
        ({"created_before": "1e300"}, "created_before"),
    ],
)
def test_bad_query_values_are_refused_with_their_field(api, params, field):
    response = api.get("/v1/jobs", params=params)

    assert error_of(response) == (422, "INVALID_INPUT", field)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "-1"}, "limit"),
        ({"cursor": "1"}, "cursor"),
        ({"status": "queued"}, "status"),
    ],
)
def test_bad_query_values_of_batches_are_refused_with_their_field(api, params, field):
    response = api.get("/v1/batches", params=params)

    assert error_of(response) == (422, "INVALID_INPUT", field)


def test_pages_of_batches_hold_every_batch_once_newest_first(api):
    made = [
        api.post("/v1/batches", json={"type": "image.transform", "items": [transform_item()]})
        for _ in range(5)
    ]
    ids = [response.json()["id"] for response in made]

    first = api.get("/v1/batches", params={"limit": 2}).json()

    assert [batch["id"] for batch in first["data"]] == ids[::-1][:2]
    assert "failures" not in first["data"][0]
    assert first["data"][0]["counts"]["total"] == 1
    assert listed(api, path="/v1/batches", limit=2) == ids[::-1]


def test_a_status_filter_of_batches_keeps_those_with_that_status(api):
    def batch() -> str:
        items = [transform_item()]
        made = api.post("/v1/batches", json={"type": "image.transform", "items": items})
        return str(made.json()["id"])

    running, canceled = batch(), batch()
    assert api.post(f"/v1/batches/{canceled}/cancel").status_code == 200
    refused = api.post("/v1/batches", json={"type": "image.transform", "items": ["no item"]})
    completed = refused.json()["id"]

    assert listed(api, path="/v1/batches", status="running") == [running]
    assert listed(api, path="/v1/batches", status="canceled") == [canceled]
    assert listed(api, path="/v1/batches", status="completed") == [completed]
    assert listed(api, path="/v1/batches", status="running,canceled") == [canceled, running]


def test_a_batch_whose_record_has_expired_leaves_the_list(app, api):
    kept, expired = (
        api.post("/v1/batches", json={"type": "image.transform", "items": ["no item"]}).json()["id"]
        for _ in range(2)
    )
    index = f"pixhook:batches:index:{app.client.client.id}"
    with Redis.from_url(app.redis_url) as redis:
        redis.delete(f"pixhook:batch:{expired}")

        assert listed(api, path="/v1/batches") == [kept]
        assert redis.zrange(index, 0, -1) == [kept.encode()]


def test_a_reference_index_keeps_only_jobs_within_retention(make_app):
    app = make_app(PIXHOOK_JOB_RETENTION="1s")
    api = app.http(app.client.api_key)
    first = submit(api, reference="SKU-3")["id"]
    key = f"pixhook:jobs:index:reference:{app.client.client.id}:SKU-3"
    with Redis.from_url(app.redis_url) as redis:
        redis.pexpire(key, 60_000)  # as if other jobs with it had come since: it outlives the job
        wait_until(lambda: not redis.exists(f"pixhook:job:{first}"), 5, "the job to expire")
        second = submit(api, reference="SKU-3")["id"]

        assert redis.zrange(key, 0, -1) == [second.encode()]
        assert 0 < redis.pttl(key) <= 1000
