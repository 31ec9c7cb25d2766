"""The attempt log, listing by status, manual retry, secret rotation and metrics."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.cli import pixhook
from tests.support.deliveries import dead_delivery, deliveries_of, deliveries_of_id
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API and both workers in this process: these jobs and webhooks cross no process."""
    return in_process_api


@pytest.fixture
def make_receiver(
    in_process_receivers: Callable[..., Receiver],
) -> Callable[..., Receiver]:
    return in_process_receivers


def test_each_attempt_is_in_the_log(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 503 if n == 0 else 200)
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]
    [summary] = deliveries_of(api, job_id)

    delivery = api.get(f"/v1/deliveries/{summary['id']}").json()

    first, second = delivery["attempts"]
    assert (first["number"], first["status_code"], first["error_code"]) == (1, 503, "HTTP_STATUS")
    assert first["response_excerpt"] == "ok"
    assert (second["number"], second["status_code"], second["error_code"]) == (2, 200, None)
    assert second["duration_ms"] > 0 and second["started_at"] > first["started_at"]
    assert delivery["event_type"] == "job.completed"


def test_deliveries_are_listed_by_status(api, make_receiver):
    receiver = make_receiver()
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]
    [delivery] = deliveries_of(api, job_id)

    succeeded = api.get("/v1/deliveries", params={"status": "succeeded", "limit": 200}).json()

    assert delivery["id"] in {d["id"] for d in succeeded["data"]}


def test_listing_by_unknown_status_is_refused(api):
    response = api.get("/v1/deliveries", params={"status": "lost"})

    assert response.status_code == 422
    assert error_of(response)["field"] == "status"


def test_manual_retry_sends_a_succeeded_delivery_again(api, make_receiver):
    receiver = make_receiver()
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]
    [delivery] = deliveries_of(api, job_id)

    response = api.post(f"/v1/deliveries/{delivery['id']}/retry")

    assert response.status_code == 202
    first, again = receiver.wait_for(2)
    assert first.webhook_id == again.webhook_id and again.verified
    assert deliveries_of_id(api, delivery["id"])["attempt_count"] == 2


def test_retry_of_a_dead_delivery_restarts_its_schedule(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    delivery = dead_delivery(api, receiver.url)

    api.post(f"/v1/deliveries/{delivery['id']}/retry")

    receiver.wait_for(6)  # three more attempts: a fresh schedule, not a single try
    assert deliveries_of_id(api, delivery["id"])["attempt_count"] == 6


def test_another_clients_delivery_is_not_found(api, app_with_workers: InProcessApi, make_receiver):
    receiver = make_receiver()
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]
    [delivery] = deliveries_of(api, job_id)
    other = pixhook(app_with_workers, "clients", "create", "other", "--json")
    other_key = __import__("json").loads(other.stdout)["api_key"]

    response = app_with_workers.http(other_key).get(f"/v1/deliveries/{delivery['id']}")

    assert response.status_code == 404


def test_rotated_secret_signs_beside_the_old_one(
    api, app_with_workers: InProcessApi, make_receiver
):
    created = __import__("json").loads(
        pixhook(app_with_workers, "clients", "create", "rotating", "--json").stdout
    )
    old_secret = created["webhook_secret"]
    rotated = pixhook(
        app_with_workers, "clients", "rotate-secret", created["id"], "--overlap", "1h"
    )
    new_secret = rotated.stdout.split()[1]
    old_side = make_receiver(secret=old_secret)
    new_side = make_receiver(secret=new_secret)
    client = app_with_workers.http(created["api_key"])

    with client:
        client.post("/v1/jobs", json=transform_job(webhook_url=old_side.url))
        client.post("/v1/jobs", json=transform_job(webhook_url=new_side.url))
        [old_request], [new_request] = old_side.wait_for(1), new_side.wait_for(1)

    assert old_request.verified and new_request.verified
    assert len(new_request.headers["webhook-signature"].split(" ")) == 2


def test_metrics_count_deliveries_and_show_the_dlq(
    api, app_with_workers: InProcessApi, make_receiver
):
    receiver = make_receiver(respond=lambda n: 500)
    dead_delivery(api, receiver.url)

    text = app_with_workers.http().get("/metrics").text

    assert 'pixhook_delivery_attempts_total{result="HTTP_STATUS"}' in text
    assert 'pixhook_deliveries_total{outcome="dead"}' in text
    assert "pixhook_delivery_attempt_duration_seconds_bucket" in text
    dlq_size = next(line for line in text.splitlines() if line.startswith("pixhook_dlq_size "))
    assert float(dlq_size.split()[1]) >= 1
    assert "pixhook_circuits_open" in text and "pixhook_deliveries_due" in text
