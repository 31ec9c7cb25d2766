"""Resumable by design: killing any process at any moment (the API mid-upload included) loses no
item and repeats no paid provider call beyond those in flight at the kill. Each process here is
killed with SIGKILL, so nothing it would do on the way out can help."""

from __future__ import annotations

import base64
import collections
import hashlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import pytest
from redis import Redis

from service.cli.devstack import RunningStack, local_stack
from service.jobs.batch_store import STAGING_TTL_S
from tests.conftest import provider_env
from tests.support.batches import SlowImages, results_of, wait_for_batch
from tests.support.images import image_bytes
from tests.support.openai_standin import Answer, OpenAIStandIn
from tests.support.raw_servers import Response, Scripted
from tests.support.sse import frames
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until

JOB_CONCURRENCY = 4  # per jobs worker: the most provider calls one worker can have in flight
PHOTOS = 40
ROWS = 160
NOTES = "x" * 10_000  # a CSV column no item uses: it makes the file big enough to be staged early


@pytest.fixture(scope="module")
def standin() -> Iterator[OpenAIStandIn]:
    server = OpenAIStandIn().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, standin: OpenAIStandIn
) -> Iterator[RunningStack]:
    env = {
        **STACK_ENV,
        **provider_env(standin),
        "PIXHOOK_JOB_CONCURRENCY": str(JOB_CONCURRENCY),
        # A dead worker's lease on a photo's answer holds up the job that takes the photo over.
        "PIXHOOK_FLIGHT_LEASE": "2s",
        "PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE": "6000",
        "PIXHOOK_MAX_REQUEST_BYTES": "4000000",
    }
    with local_stack(tmp_path_factory.mktemp("resumption"), env) as running:
        yield running


@pytest.fixture
def redis(stack: RunningStack) -> Iterator[Redis]:
    with Redis.from_url(stack.redis_url) as client:
        yield client


def kill(stack: RunningStack, name: str) -> None:
    process = stack.processes.processes[name]
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def restart_api(stack: RunningStack) -> None:
    port = urlsplit(stack.api_url).port
    assert port is not None
    stack.processes.start_api(port)


def photo_of(request: dict[str, Any]) -> str:
    """Which photo a vision request asks about (a digest of the image it uploads)."""
    parts = request["body"]["messages"][-1]["content"]
    url = next(part["image_url"]["url"] for part in parts if part.get("type") == "image_url")
    return hashlib.sha256(url.encode()).hexdigest()


def test_a_jobs_worker_killed_mid_batch_repeats_only_the_calls_it_had_in_flight(
    stack, api, standin
):
    standin.script([Answer(delay_s=0.4)] * (PHOTOS * 3))  # slow enough to kill mid-call
    paid_before = standin.paid_calls("gpt-4o-mini")
    items = [
        {
            "input": {"image": {"base64": _b64(image_bytes((60 + i, 40)))}, "provider": "openai"},
            "reference": f"SKU-{i:03}",
        }
        for i in range(PHOTOS)
    ]
    response = api.post("/v1/batches", json={"type": "image.analyze", "items": items})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]

    def calls_in_flight() -> int:
        paid = standin.paid_calls("gpt-4o-mini") - paid_before
        return len(standin.requests) - paid if paid >= PHOTOS // 4 else 0

    in_flight = wait_until(calls_in_flight, 20, "a quarter answered and more calls in flight")
    kill(stack, "worker-jobs")
    asked_before_kill = {photo_of(request) for request in standin.requests}
    stack.processes.start_worker("jobs")

    batch = wait_for_batch(api, batch_id, timeout_s=40)
    assert batch["status"] == "completed"
    assert batch["counts"]["succeeded"] == PHOTOS
    lines = results_of(api, batch)
    assert sorted((line["index"], line["reference"]) for line in lines) == [
        (i, f"SKU-{i:03}") for i in range(PHOTOS)
    ]
    calls = collections.Counter(photo_of(request) for request in standin.requests)
    assert len(calls) == PHOTOS
    repeated = {photo for photo, count in calls.items() if count > 1}
    # Only calls the killed worker had in flight are made again: one per job it was running.
    assert repeated <= asked_before_kill
    assert sum(calls.values()) - PHOTOS <= JOB_CONCURRENCY, (in_flight, calls)


def test_an_api_killed_mid_upload_leaves_no_batch_and_the_same_upload_makes_it(
    stack, api, redis, serve
):
    images = serve(Scripted(lambda n: Response(200, {"content-type": "image/jpeg"}, _JPEG)))
    csv = _catalogue_csv(images.url("/p/{}.jpg"))
    spec = (
        '{"type": "image.transform", "input": {"image": {"url": "{image_url}"}, "width": 20},'
        ' "reference_column": "sku", "metadata_columns": ["category"]}'
    )
    listed_before = _batch_ids(api)
    keys_before = _all_keys(redis)
    killed = threading.Event()
    outcome: list[BaseException | httpx.Response] = []

    def upload() -> None:
        try:
            cut_at = ROWS * 3 // 4
            outcome.append(_send(stack, spec, csv, "catalogue-1", cut_at=cut_at, pause=killed))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=upload)
    sender.start()
    wait_until(lambda: redis.keys("pixhook:batch:*:staged"), 20, "the first items staged")
    kill(stack, "api")
    killed.set()
    sender.join(10)
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome
    restart_api(stack)

    assert _batch_ids(api) == listed_before
    left = _all_keys(redis) - keys_before
    assert any(key.endswith(b":staged") for key in left)
    # Nothing of the broken upload outlives the staging TTL: not its items, not its key's claim.
    for key in left:
        assert 0 < _ttl_ms(redis, key) <= STAGING_TTL_S * 1000, key

    response = wait_until(
        lambda: _unless_in_progress(_send(stack, spec, csv, "catalogue-1")),
        40,
        "the dead upload's Idempotency-Key claim to lapse",
    )
    assert response.status_code == 202, response.text
    batch = wait_for_batch(api, response.json()["id"])
    assert batch["counts"] == batch["counts"] | {"total": ROWS, "succeeded": ROWS}
    lines = results_of(api, batch)
    assert sorted((line["index"], line["reference"]) for line in lines) == [
        (i, f"sku-{i}") for i in range(ROWS)
    ]
    assert all(line["metadata"] == {"category": "shoes"} for line in lines)
    assert set(_batch_ids(api)) - listed_before == {batch["id"]}


def test_an_api_killed_while_a_batch_runs_does_not_stop_it(stack, api, serve, make_receiver):
    images = serve(SlowImages(delay_s=0.1))
    receiver = make_receiver()
    items = [
        {"input": {"image": {"url": images.url(f"/i-{i}.jpg")}, "width": 20}, "reference": f"r{i}"}
        for i in range(24)
    ]
    body = {"type": "image.transform", "items": items, "webhook_url": receiver.url}
    response = api.post("/v1/batches", json=body | {"concurrency": 3})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    wait_until(lambda: len(images.requests) >= 4, 10, "items running")

    kill(stack, "api")
    # The workers finish it and tell the receiver while no API is there to ask.
    [completed] = receiver.wait_for(1, timeout_s=30)
    assert completed.payload["type"] == "batch.completed"
    assert completed.payload["data"]["counts"]["succeeded"] == 24
    restart_api(stack)

    batch = api.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "completed"
    lines = results_of(api, batch)
    assert sorted((line["index"], line["reference"]) for line in lines) == [
        (i, f"r{i}") for i in range(24)
    ]
    with api.stream("GET", f"/v1/batches/{batch_id}/events") as stream:
        events = [frame.event for frame in frames(stream) if frame.event]
    assert events.count("batch.completed") == 1
    assert events[-1] == "batch.completed"
    assert len(receiver.requests) == 1


_JPEG = image_bytes((60, 40))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _catalogue_csv(url_pattern: str) -> list[bytes]:
    """The CSV's header and rows, each row its own chunk."""
    rows = [b"sku,image_url,category,notes\r\n"]
    for i in range(ROWS):
        rows.append(f"sku-{i},{url_pattern.format(i)},shoes,{NOTES}\r\n".encode())
    return rows


def _send(
    stack: RunningStack,
    spec: str,
    rows: list[bytes],
    key: str,
    *,
    cut_at: int | None = None,
    pause: threading.Event | None = None,
) -> httpx.Response:
    """A multipart upload, streamed a row at a time; with `cut_at`, it stops sending there
    until `pause` is set, then sends the rest."""
    boundary = "catalogue-boundary-" + key

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\ncontent-disposition: form-data; name="batch"\r\n\r\n{spec}\r\n'
            f'--{boundary}\r\ncontent-disposition: form-data; name="csv"; '
            f'filename="catalogue.csv"\r\ncontent-type: text/csv\r\n\r\n'
        ).encode()
        for number, row in enumerate(rows):
            if number == cut_at and pause is not None:
                pause.wait(30)
            yield row
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {
        "authorization": f"Bearer {stack.client.api_key}",
        "content-type": f"multipart/form-data; boundary={boundary}",
        "idempotency-key": key,
    }
    return httpx.post(f"{stack.api_url}/v1/batches", content=body(), headers=headers, timeout=30)


def _unless_in_progress(response: httpx.Response) -> httpx.Response | None:
    if response.status_code == 409 and "IDEMPOTENCY_IN_PROGRESS" in response.text:
        return None
    return response


def _batch_ids(api: httpx.Client) -> set[str]:
    response = api.get("/v1/batches", params={"limit": 100})
    assert response.status_code == 200, response.text
    return {batch["id"] for batch in response.json()["data"]}


def _all_keys(redis: Redis) -> set[bytes]:
    return set(cast(list[bytes], redis.keys("*")))


def _ttl_ms(redis: Redis, key: bytes) -> int:
    return cast(int, redis.pttl(key))
