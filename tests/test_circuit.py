"""Whose failure opens a host's circuit: the host's (it cannot be reached, or 5xx and 429 come
from several of its URLs), never one URL's answer, which judges that URL alone.

A stack of its own (this module's `stack` fixture, which the shared `api` fixture then uses):
three host failures open a circuit for a minute, so a delivery it holds visibly waits.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from service.cli.devstack import RunningStack, local_stack
from tests.support.clients import client_for
from tests.support.deliveries import deliveries_of
from tests.support.jobs import transform_job
from tests.support.raw_servers import RawServer, Resetter, Response
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until
from webhooks.keys import Keys

CIRCUIT_ENV = {
    **STACK_ENV,
    "PIXHOOK_CIRCUIT_THRESHOLD": "3",
    "PIXHOOK_CIRCUIT_COOLDOWN": "60s",
    "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "200ms,200ms,200ms,200ms,200ms,200ms",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(tmp_path_factory.mktemp("circuit"), CIRCUIT_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def tenant_b(stack: RunningStack) -> Iterator[httpx.Client]:
    """A second client of the stack, whose webhook URLs share a host with the first one's."""
    _, client = client_for(stack, "tenant-b")
    with client:
        yield client


class FailingPaths(RawServer):
    """Answers 500 to requests for `paths`, 200 to any other."""

    def __init__(self, *paths: str) -> None:
        super().__init__()
        self._paths = paths

    def handle(self, conn: socket.socket) -> None:
        path = self.read_request(conn).request_line.split()[1]
        self.send(conn, Response(500 if path in self._paths else 200).encode())


def fail_jobs(api: httpx.Client, server: RawServer, paths: list[str], failures: int) -> None:
    """A job per path with its webhook there; returns once every path was tried and `failures`
    attempts reached the host."""
    for path in paths:
        api.post("/v1/jobs", json=transform_job(webhook_url=server.url(path)))
    wait_until(
        lambda: not (len(server.requests) < failures or tried(server) < set(paths)),
        10,
        f"{failures} attempts, at every path",
    )


def tried(server: RawServer) -> set[str]:
    return {request.request_line.split()[1] for request in server.requests}


def tenant_b_job(tenant_b: httpx.Client, server: RawServer) -> str:
    job = tenant_b.post("/v1/jobs", json=transform_job(webhook_url=server.url("/tenant-b")))
    return str(job.json()["id"])


def held_by_the_circuit(stack: RunningStack, client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job's delivery once an open circuit pushed it back by a cooldown (the API does not
    show that due time, so it is read from the queue)."""
    with Redis.from_url(stack.redis_url) as redis:

        def held() -> dict[str, Any] | None:
            for delivery in client.get(f"/v1/jobs/{job_id}").json()["deliveries"]:
                due_ms = redis.zscore(Keys("pixhook").due, delivery["id"])
                if due_ms is not None and due_ms / 1000 > time.time() + 30:
                    return dict(delivery)
            return None

        return wait_until(held, 10, f"the delivery of job {job_id} to be held by the circuit")


def test_one_tenants_failing_url_does_not_hold_another_tenants_url_on_the_host(
    api, tenant_b, serve
):
    """Issue 15 item 3: client A's deliveries answered 500 at /tenant-a opened the host's circuit
    and held client B's delivery to /tenant-b, which answers 200, with 0 attempts for minutes."""
    server = serve(FailingPaths("/tenant-a"))
    fail_jobs(api, server, ["/tenant-a"] * 3, failures=3)

    [delivery] = deliveries_of(tenant_b, tenant_b_job(tenant_b, server), timeout_s=10)

    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 1)


def test_5xx_from_several_urls_of_a_host_holds_its_other_urls(stack, api, tenant_b, serve):
    """The other side of the rule: 500s from two tenants' URLs say that the host is failing."""
    server = serve(FailingPaths("/tenant-a", "/tenant-c"))
    fail_jobs(api, server, ["/tenant-a", "/tenant-c"], failures=3)

    held = held_by_the_circuit(stack, tenant_b, tenant_b_job(tenant_b, server))

    assert (held["status"], held["attempt_count"]) == ("pending", 0)


def test_resets_from_one_url_of_a_host_hold_its_other_urls(stack, api, tenant_b, serve):
    """The other side of the rule: a host that resets connections is failing, whatever the URL."""
    server = serve(Resetter())
    fail_jobs(api, server, ["/tenant-a"], failures=3)

    held = held_by_the_circuit(stack, tenant_b, tenant_b_job(tenant_b, server))

    assert (held["status"], held["attempt_count"]) == ("pending", 0)
