"""An endpoint moved to another URL while its host's circuit is open: its deliveries follow it at
once, and the breaker and the DLQ's host index go by where they went. A stack of its own, with a
breaker that opens after two failures and stays open for a minute, and two loopback hosts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.cli.devstack import RunningStack, local_stack
from tests.support.clients import client_for
from tests.support.deliveries import deliveries_of
from tests.support.jobs import transform_job
from tests.support.raw_servers import Resetter
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver

MOVES_ENV = {
    **STACK_ENV,
    "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32,127.0.0.2/32",
    "PIXHOOK_CIRCUIT_THRESHOLD": "2",
    "PIXHOOK_CIRCUIT_COOLDOWN": "60s",
    "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "200ms,200ms,200ms,200ms,200ms,200ms",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(tmp_path_factory.mktemp("moves"), MOVES_ENV) as running:
        yield running


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    _, client = client_for(stack, "moves")
    with client:
        yield client


def failing_then_moved(api: httpx.Client, answer: int) -> tuple[str, Resetter, Receiver]:
    """A job's event failing at an endpoint on 127.0.0.1 until that host's circuit opens, then
    the endpoint moved to 127.0.0.2, which answers `answer`. The job id and both receivers."""
    body = {"url": "http://127.0.0.1:9/x", "event_types": ["job.completed"]}
    created = api.post("/v1/endpoints", json=body).json()
    # Resets, not a 500: one URL's 500s are that URL's trouble, and open no host's circuit.
    old = Resetter().start()
    new = Receiver(created["secret"], lambda n: answer, host="127.0.0.2")
    api.patch(f"/v1/endpoints/{created['id']}", json={"url": old.url()})
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    # Two failures: the old host's circuit is open for a minute.
    wait_until(lambda: len(old.requests) >= 2, 10, "the old host to be tried twice")
    api.patch(f"/v1/endpoints/{created['id']}", json={"url": new.url})
    return job_id, old, new


def test_deliveries_follow_a_moved_endpoint_without_waiting_for_the_old_hosts_circuit(api):
    job_id, old, new = failing_then_moved(api, 200)
    try:
        [arrived] = new.wait_for(1, timeout_s=10)

        assert arrived.verified and arrived.payload["type"] == "job.completed"
        [delivery] = endpoint_deliveries(api, job_id)
        assert (delivery["status"], delivery["url"]) == ("succeeded", new.url)
        assert len(old.requests) == 2
    finally:
        old.close()
        new.close()


def test_a_moved_endpoints_dead_delivery_is_filed_under_the_host_it_died_at(api):
    job_id, old, new = failing_then_moved(api, 410)
    try:
        new.wait_for(1, timeout_s=10)

        [dead] = endpoint_deliveries(api, job_id)
        assert (dead["status"], dead["url"], dead["last_error"]) == ("dead", new.url, "GONE")
        assert dlq_ids(api, "127.0.0.2") == [dead["id"]]
        assert dlq_ids(api, "127.0.0.1") == []
    finally:
        old.close()
        new.close()


def endpoint_deliveries(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return [d for d in deliveries_of(api, job_id) if d["endpoint_id"] is not None]


def dlq_ids(api: httpx.Client, host: str) -> list[str]:
    return [d["id"] for d in api.get("/v1/dlq", params={"host": host}).json()["data"]]
