"""At-least-once under failure: a killed worker, a host that keeps failing, a host that recovers.

These run on a stack of their own (this module's `stack` fixture, which the shared `api` and
`make_receiver` fixtures then use), whose circuit breaker and auto-redrive are switched on.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from service.devstack import RunningStack, local_stack
from tests.helpers import transform_job, wait_until
from tests.test_deliveries import deliveries_of
from webhooks.events import event_body
from webhooks.outbox import submit
from webhooks.store import DeliveryStore

RELIABILITY_ENV = {
    "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "200ms,200ms,200ms,200ms,200ms,200ms",
    "PIXHOOK_WEBHOOK_ATTEMPT_TIMEOUT": "2s",
    "PIXHOOK_WEBHOOK_THROTTLED_BACKOFF": "200ms",
    "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32",
    "PIXHOOK_CIRCUIT_THRESHOLD": "3",
    "PIXHOOK_CIRCUIT_COOLDOWN": "1s",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(tmp_path_factory.mktemp("reliability"), RELIABILITY_ENV) as running:
        yield running


def submit_events(stack: RunningStack, url: str, count: int) -> set[str]:
    """`count` events straight into the delivery engine, as the jobs worker would hand them in."""

    async def main() -> set[str]:
        redis = Redis.from_url(stack.redis_url)
        store = DeliveryStore(redis)
        event_ids = {f"evt_kill_{i}" for i in range(count)}
        for event_id in event_ids:
            body = event_body("job.completed", event_id, {"n": event_id}, "2026-01-01T00:00:00Z")
            await submit(
                store,
                event_id=event_id,
                event_type="job.completed",
                owner=stack.client.client.id,
                url=url,
                payload=body,
            )
        await redis.aclose()
        return event_ids

    return asyncio.run(main())


def test_worker_killed_mid_batch_loses_no_event(stack, make_receiver):
    def respond(n: int) -> int:
        time.sleep(0.004)  # requests are answered one at a time: the kill lands mid-stream
        return 200

    receiver = make_receiver(respond=respond)
    event_ids = submit_events(stack, receiver.url, 1000)
    wait_until(lambda: len(receiver.requests) >= 200, 60, "the first 200 events")

    stack.processes.processes["worker-deliveries"].send_signal(signal.SIGKILL)
    stack.processes.processes["worker-deliveries"].wait()
    arrived_before_restart = {r.webhook_id for r in receiver.requests}
    stack.processes.start_worker("deliveries")

    wait_until(lambda: {r.webhook_id for r in receiver.requests} >= event_ids, 60, "every event")
    assert len(arrived_before_restart) < 1000  # the kill really was mid-stream
    assert all(r.verified for r in receiver.requests)


def test_open_circuit_holds_deliveries_without_spending_attempts(api, stack, make_receiver):
    down = True
    receiver = make_receiver(respond=lambda n: 500 if down else 200)
    first = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    receiver.wait_for(3)  # three failures in a row open the circuit
    later = [
        api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json() for _ in range(2)
    ]
    time.sleep(0.5)
    held_while_open = len(receiver.requests)
    metrics = httpx.get(f"{stack.api_url}/metrics").text
    down = False

    settled = [deliveries_of(api, job["id"])[0] for job in [first, *later]]

    assert held_while_open == 3
    open_circuits = next(
        line for line in metrics.splitlines() if line.startswith("pixhook_circuits_open ")
    )
    assert float(open_circuits.split()[1]) >= 1
    assert all(d["status"] == "succeeded" for d in settled)
    assert [d["attempt_count"] for d in settled[1:]] == [1, 1]


def test_host_that_recovers_gets_its_dead_deliveries_redriven(api, make_receiver):
    # 400 while "down": the host answers, so the breaker stays closed and the delivery dies
    # after its attempts instead of waiting on an open circuit.
    down = True
    receiver = make_receiver(respond=lambda n: 400 if down else 200)
    dead_job = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    [dead] = deliveries_of(api, dead_job["id"])
    down = False

    api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url))

    def redriven() -> bool:
        delivery = api.get(f"/v1/deliveries/{dead['id']}").json()
        return bool(delivery["status"] == "succeeded" and delivery["replays"] == 1)

    wait_until(redriven, 20, "the dead delivery to be redriven")
    assert dead["status"] == "dead"
