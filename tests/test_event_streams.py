"""Live events over SSE: `GET /v1/jobs/{id}/events`, read over real HTTP from the real API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.cli.devstack import RunningStack, local_stack
from service.clients.store import client_store
from service.config import Settings
from service.jobs.streams import append_event, last_event_type
from service.runner import execute
from service.runtime import Runtime
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.sse import Frame, frames
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until

HEARTBEAT_S = 0.2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """This module's own stack: heartbeats every 200 ms, and a Redis whose clients are its own."""
    env = {**STACK_ENV, "PIXHOOK_SSE_HEARTBEAT": f"{HEARTBEAT_S}s"}
    with local_stack(tmp_path_factory.mktemp("sse"), env) as running:
        yield running


@pytest.fixture
def redis(stack: RunningStack) -> Iterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    client.close()


def stream(api: httpx.Client, job_id: str, **kwargs: Any) -> list[Frame]:
    """Every frame until the server closes the stream."""
    with api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=10, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(frames(response))


def events(collected: list[Frame]) -> list[Frame]:
    return [frame for frame in collected if frame.event is not None]


def submit(api: httpx.Client, image_url: str | None = None, **fields: Any) -> str:
    body = transform_job(**fields)
    if image_url is not None:
        body["input"]["image"] = {"url": image_url}
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def until_event(collected: Iterator[Frame], event_type: str) -> list[Frame]:
    seen = []
    for frame in collected:
        seen.append(frame)
        if frame.event == event_type:
            return seen
    raise AssertionError(f"the stream ended before {event_type}: {seen}")


def test_a_job_streams_from_submission_to_completion(api):
    job_id = submit(api)

    streamed = events(stream(api, job_id))

    # `job.queued` leads only when the stream opened before a worker took the job.
    types = [e.event for e in streamed if e.event != "job.queued"]
    assert types == ["job.started", "job.completed"]
    assert [e.payload["sequence"] for e in streamed[-2:]] == [1, 2]
    assert streamed[-1].payload["status"] == "succeeded"
    assert streamed[-1].payload["sequence"] == wait_for_status(api, job_id)["sequence"]


def test_stream_events_carry_what_the_webhooks_carry(api, make_receiver):
    receiver = make_receiver()
    job_id = submit(api, webhook_url=receiver.url, webhook_events=["started", "completed"])

    streamed = {e.event: e.payload for e in events(stream(api, job_id))}

    webhooks = {w.payload["type"]: w.payload["data"] for w in receiver.wait_for(2)}
    assert streamed["job.started"] == webhooks["job.started"]
    assert streamed["job.completed"] == webhooks["job.completed"]
    assert streamed["job.completed"]["sequence"] == wait_for_status(api, job_id)["sequence"]


def test_a_finished_job_replays_its_events_and_closes(api):
    job_id = submit(api)
    wait_for_status(api, job_id)

    collected = stream(api, job_id)

    assert collected[0].retry is not None
    assert [e.event for e in events(collected)][-2:] == ["job.started", "job.completed"]
    assert not [frame for frame in collected if frame.comment]  # it never sat idle


def test_last_event_id_resumes_after_that_event(api):
    job_id = submit(api)
    first, *later = events(stream(api, job_id))

    resumed = events(stream(api, job_id, headers={"last-event-id": first.id}))

    assert resumed == later


def test_last_event_id_can_be_a_query_parameter(api):
    job_id = submit(api)
    first, *later = events(stream(api, job_id))

    resumed = events(stream(api, job_id, params={"last_event_id": first.id}))

    assert resumed == later


def test_resuming_after_the_final_event_closes_at_once(api):
    job_id = submit(api)
    final = events(stream(api, job_id))[-1]

    collected = stream(api, job_id, headers={"last-event-id": final.id})

    assert events(collected) == []
    assert not [frame for frame in collected if frame.comment]


def test_a_status_published_again_after_a_crash_is_streamed_once(stack, api):
    """A worker that dies after publishing reruns the job, which publishes its status again."""
    job_id = submit(api)
    wait_for_status(api, job_id)
    settings = Settings.from_env(
        {
            "PIXHOOK_REDIS_URL": stack.redis_url,
            "PIXHOOK_STORAGE": f"local:{stack.files_dir}",
            "PIXHOOK_SECRET_KEY": "k" * 32,
            "PIXHOOK_PUBLIC_URL": stack.api_url,
        }
    )

    async def rerun() -> None:
        runtime = await Runtime.open(settings)
        try:
            await execute(runtime, job_id)
        finally:
            await runtime.close()

    asyncio.run(rerun())

    types = [e.event for e in events(stream(api, job_id))]
    assert types.count("job.completed") == 1


def test_another_clients_job_is_not_found(stack, api):
    job_id = submit(api)

    async def other_client() -> str:
        async with client_store(stack.redis_url) as store:
            return (await store.create("other")).api_key

    headers = {"authorization": f"Bearer {asyncio.run(other_client())}"}
    response = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}/events", headers=headers)

    assert response.status_code == 404
    assert error_of(response)["code"] == "JOB_NOT_FOUND"


def test_an_unknown_job_is_not_found(api):
    response = api.get("/v1/jobs/job_doesnotexist/events")

    assert response.status_code == 404
    assert error_of(response)["code"] == "JOB_NOT_FOUND"


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-1", "1700000000000-x", "99999999999999999999"])
def test_a_bad_last_event_id_is_refused(api, bad):
    job_id = submit(api)

    response = api.get(f"/v1/jobs/{job_id}/events", headers={"last-event-id": bad})

    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_EVENT_ID"
    assert error_of(response)["field"] == "Last-Event-ID"


def test_a_bad_last_event_id_query_parameter_names_itself(api):
    job_id = submit(api)

    response = api.get(f"/v1/jobs/{job_id}/events", params={"last_event_id": "soon"})

    assert response.status_code == 422
    assert error_of(response)["field"] == "last_event_id"


def test_an_idle_stream_sends_heartbeats_until_the_job_ends(api, held_image):
    url, release = held_image
    job_id = submit(api, url)

    with api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=10) as response:
        received = frames(response)
        until_event(received, "job.started")
        assert next(received).comment == "keep-alive"
        assert next(received).comment == "keep-alive"
        release.set()
        rest = list(received)

    assert [e.event for e in events(rest)] == ["job.completed"]


def test_a_canceled_job_ends_its_stream(api, held_image):
    url, _ = held_image
    job_id = submit(api, url)

    with api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=10) as response:
        received = frames(response)
        until_event(received, "job.started")
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        rest = events(list(received))

    assert [(e.event, e.payload["status"]) for e in rest] == [("job.canceled", "canceled")]


def test_a_stream_opened_on_a_queued_job_starts_with_job_queued(api, held_image):
    url, release = held_image
    # Every worker slot busy with a held job: the next job waits in the queue.
    for _ in range(4):
        submit(api, url)
    job_id = submit(api)

    with api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=10) as response:
        received = frames(response)
        first = events(until_event(received, "job.queued"))
        release.set()
        rest = events(list(received))

    assert [e.payload["status"] for e in first] == ["queued"]
    assert [e.event for e in rest] == ["job.started", "job.completed"]


def test_events_appended_while_watching_arrive_live(stack, api, held_image, redis):
    url, release = held_image
    job_id = submit(api, url)

    with api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=10) as response:
        received = frames(response)
        until_event(received, "job.started")
        asyncio.run(_append(stack.redis_url, job_id, "job.output.delta", {"text": "a red"}))
        delta = until_event(received, "job.output.delta")[-1]
        release.set()
        rest = events(list(received))

    assert delta.payload == {"text": "a red"}
    assert [e.event for e in rest] == ["job.completed"]


async def _append(redis_url: str, owner_id: str, event_type: str, data: dict[str, Any]) -> None:
    client = AsyncRedis.from_url(redis_url)
    try:
        await append_event(client, owner_id, event_type, data, ttl_s=60)
    finally:
        await client.aclose()


def test_an_owners_newest_event_says_whether_it_has_ended(stack):
    """What `sse_response` checks by default for owners other than jobs, such as batches."""

    async def newest_after_each(types: list[str]) -> list[str | None]:
        client = AsyncRedis.from_url(stack.redis_url)
        try:
            newest = [await last_event_type(client, "bat_sse_test")]
            for event_type in types:
                await append_event(client, "bat_sse_test", event_type, {}, ttl_s=60)
                newest.append(await last_event_type(client, "bat_sse_test"))
            return newest
        finally:
            await client.aclose()

    newest = asyncio.run(newest_after_each(["batch.progress", "batch.completed"]))

    assert newest == [None, "batch.progress", "batch.completed"]


def test_clients_that_leave_free_their_redis_connections(api, held_image, redis):
    url, release = held_image
    job_id = submit(api, url)
    path = f"/v1/jobs/{job_id}/events"

    with ExitStack() as open_streams:
        # Kept: dropping a reader of `iter_lines` would close its connection right away.
        readers = [frames(open_streams.enter_context(api.stream("GET", path))) for _ in range(50)]
        for reader in readers:
            until_event(reader, "job.started")
        assert _blocked_reads(redis) == 50  # one connection of its own each
        started = time.monotonic()
        assert api.get(f"/v1/jobs/{job_id}").status_code == 200
        assert time.monotonic() - started < 1  # watchers do not starve the API's own pool

    wait_until(lambda: _blocked_reads(redis) == 0, 5, "streams to release their connections")
    started = time.monotonic()
    assert api.get(f"/v1/jobs/{job_id}").status_code == 200
    assert time.monotonic() - started < 1
    release.set()


def _blocked_reads(redis: Redis) -> int:
    clients: list[dict[str, str]] = redis.client_list()  # type: ignore[assignment]
    return len([client for client in clients if client["cmd"] == "xread"])
