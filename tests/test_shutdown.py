"""On SIGTERM the API stops taking connections and finishes the requests it is in the middle of."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from service.cli.devstack import RunningStack, local_stack
from tests.support.jobs import transform_job
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of its own: this test stops its API."""
    env = {**STACK_ENV, "PIXHOOK_SHUTDOWN_GRACE": "10"}
    with local_stack(tmp_path_factory.mktemp("shutdown"), env) as running:
        yield running


def test_a_request_in_flight_at_sigterm_is_answered_and_new_ones_are_refused(stack):
    api = stack.processes.processes["api"]
    body = json.dumps(transform_job()).encode()
    halfway = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        halfway.set()
        # The behaviour under test: a client that pauses mid-body. SIGTERM arrives 0.2 s into
        # the pause, while the API holds the first half and still waits for the rest.
        time.sleep(1.0)
        yield body[len(body) // 2 :]

    def stop_api_halfway() -> None:
        halfway.wait(10)
        time.sleep(0.2)  # into the client's pause (above), not a guess at the API's progress
        api.send_signal(signal.SIGTERM)

    stopper = threading.Thread(target=stop_api_halfway)
    stopper.start()
    headers = {"authorization": f"Bearer {stack.client.api_key}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        response = client.post(
            "/v1/jobs", content=slow_body(), headers={"content-type": "application/json"}
        )
    stopper.join()

    assert response.status_code == 202, response.text
    # Then it exits; uvicorn re-raises the signal once its shutdown is done.
    assert api.wait(15) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.api_url}/healthcheck", timeout=2)
    # The job it accepted on the way out is not lost: the worker runs it.
    job_id = response.json()["id"]
    key = f"pixhook:job:{job_id}"
    with redis.Redis.from_url(stack.redis_url) as connection:
        wait_until(
            lambda: json.loads(connection.get(key) or b"{}").get("status") == "succeeded",
            20,
            "the accepted job to run",
        )
