"""Webhook deliveries: retried on failure with the same event id, recorded attempt by attempt."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.deliveries import deliveries_of
from tests.support.jobs import transform_job, wait_for_status
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


def test_failed_attempt_is_retried_with_the_same_webhook_id(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 503 if n == 0 else 200)
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]

    first, second = receiver.wait_for(2)

    assert first.answered == 503 and second.answered == 200
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body
    assert second.verified
    [delivery] = deliveries_of(api, job_id)
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 2)


def test_each_attempt_is_signed_with_its_own_timestamp(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500 if n < 2 else 200)
    api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url))

    attempts = receiver.wait_for(3)

    assert all(a.verified for a in attempts)
    assert len({a.webhook_id for a in attempts}) == 1
    for attempt in attempts:
        assert abs(int(attempt.headers["webhook-timestamp"]) - attempt.received_at) < 2


def test_receiver_down_for_the_whole_schedule_leaves_the_delivery_dead(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]

    deliveries = deliveries_of(api, job_id)

    assert [(d["status"], d["attempt_count"], d["last_error"]) for d in deliveries] == [
        ("dead", 3, "HTTP_STATUS")
    ]
    assert len(receiver.requests) == 3


def test_unreachable_receiver_is_recorded_as_a_connection_error(api, make_receiver):
    receiver = make_receiver()
    receiver.close()  # nothing listens on its port any more
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]

    [delivery] = deliveries_of(api, job_id)

    assert (delivery["status"], delivery["last_error"]) == ("dead", "CONNECT_ERROR")


def test_webhook_signed_with_another_secret_does_not_verify(api, make_receiver):
    stranger = make_receiver(secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA==")
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=stranger.url)).json()["id"]
    wait_for_status(api, job_id)

    [request] = stranger.wait_for(1)

    assert not request.verified


def test_an_id_that_names_the_attempt_list_is_not_found(api, make_receiver):
    """`dlv_X:attempts` named the delivery's attempt list, which Redis refused as the wrong type
    (a 503) instead of the 404 an unknown delivery gets."""
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=make_receiver().url)).json()["id"]
    [delivery] = deliveries_of(api, job_id)

    for path in (f"/v1/deliveries/{delivery['id']}:attempts", f"/v1/dlq/{delivery['id']}:attempts"):
        response = api.request("DELETE" if "/dlq/" in path else "GET", path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "DELIVERY_NOT_FOUND"
