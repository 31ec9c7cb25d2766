"""The dead-letter queue: dead deliveries are listed, replayed with the same event id, purged."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.cli import pixhook
from tests.support.deliveries import dead_delivery, deliveries_of_id
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of
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


def dlq_ids(api: httpx.Client, **params: Any) -> list[str]:
    return [d["id"] for d in api.get("/v1/dlq", params=params).json()["data"]]


def test_dead_delivery_is_listed_in_the_dlq(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)

    delivery = dead_delivery(api, receiver.url)

    [listed] = [d for d in api.get("/v1/dlq").json()["data"] if d["id"] == delivery["id"]]
    assert listed["status"] == "dead"
    assert listed["host"] == "127.0.0.1"
    assert listed["dead_at"] is not None


def test_replay_delivers_with_the_same_webhook_id(api, make_receiver):
    failing = True
    receiver = make_receiver(respond=lambda n: 500 if failing else 200)
    delivery = dead_delivery(api, receiver.url)
    failing = False

    response = api.post("/v1/dlq/replay", json={"ids": [delivery["id"]]})

    assert response.json() == {"requeued": 1}
    replayed = receiver.wait_for(4)[-1]
    assert replayed.answered == 200 and replayed.verified
    assert replayed.webhook_id == receiver.requests[0].webhook_id
    assert delivery["id"] not in dlq_ids(api)


def test_receiver_down_for_the_whole_schedule_then_replayed_receives_every_event(
    api, make_receiver
):
    failing = True
    receiver = make_receiver(respond=lambda n: 500 if failing else 200)
    deliveries = [dead_delivery(api, receiver.url) for _ in range(3)]
    failing = False
    since = min(time.time() - 60, *(time.time() for _ in deliveries))

    response = api.post("/v1/dlq/replay", json={"since": since})

    assert response.json()["requeued"] >= 3
    receiver.wait_for(12)
    accepted = {r.webhook_id for r in receiver.requests if r.answered == 200}
    sent = {r.webhook_id for r in receiver.requests[:9]}
    assert sent <= accepted


def test_replay_needs_an_explicit_selection(api):
    response = api.post("/v1/dlq/replay", json={})

    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("name", ["since", "until"])
def test_a_moment_past_any_date_is_refused_not_a_500(api, name):
    """Regression: the fuzzer's `{"until": 1.7976931348623155e+308}` overflowed turning the
    moment into microseconds and answered 500 INTERNAL_ERROR."""
    response = api.post("/v1/dlq/replay", json={name: 1.7976931348623155e308})

    assert response.status_code == 422, response.text
    assert error_of(response)["field"] == name


@pytest.mark.parametrize("body", [{"host": None}, {"since": None, "endpoint_id": None}])
def test_a_filter_of_nulls_is_no_selection_and_replays_nothing(api, make_receiver, body):
    """`{"host": null}` once re-queued every dead delivery of the client without `all: true`."""
    delivery = dead_delivery(api, make_receiver(respond=lambda n: 500).url)

    response = api.post("/v1/dlq/replay", json=body)

    assert (response.status_code, error_of(response)["code"]) == (422, "INVALID_INPUT")
    assert delivery["id"] in dlq_ids(api)


@pytest.mark.parametrize("extra", [{"host": "elsewhere.example"}, {"all": True}])
def test_ids_and_a_filter_together_are_refused(api, make_receiver, extra):
    """A filter beside `ids` was ignored: the caller meant something the replay did not do."""
    delivery = dead_delivery(api, make_receiver(respond=lambda n: 500).url)

    response = api.post("/v1/dlq/replay", json={"ids": [delivery["id"]], **extra})

    assert response.status_code == 422
    assert error_of(response) == {
        "code": "INVALID_INPUT",
        "message": "replay either ids or a filter, not both",
        "field": next(iter(extra)),
    }
    assert delivery["id"] in dlq_ids(api)


def test_dlq_filters_by_host_and_time(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    delivery = dead_delivery(api, receiver.url)

    assert delivery["id"] in dlq_ids(api, host="127.0.0.1")
    assert delivery["id"] not in dlq_ids(api, host="example.com")
    assert delivery["id"] not in dlq_ids(api, until=time.time() - 3600)
    assert delivery["id"] in dlq_ids(api, since="2020-01-01T00:00:00Z")


def test_dlq_times_may_be_durations_as_in_the_cli(api, make_receiver):
    """Issue 15 item 14: the API and `pixhook dlq` read times with one parser; `1h` is an hour
    ago in both (the API refused it)."""
    receiver = make_receiver(respond=lambda n: 500)
    delivery = dead_delivery(api, receiver.url)

    assert delivery["id"] in dlq_ids(api, since="1h")
    assert delivery["id"] not in dlq_ids(api, until="1h")


def test_dlq_pages_with_a_cursor(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    for _ in range(3):
        dead_delivery(api, receiver.url)

    first = api.get("/v1/dlq", params={"limit": 2}).json()
    second = api.get("/v1/dlq", params={"limit": 2, "cursor": first["next_cursor"]}).json()

    assert len(first["data"]) == 2 and first["next_cursor"]
    assert not {d["id"] for d in first["data"]} & {d["id"] for d in second["data"]}


def test_purged_dead_delivery_is_gone(api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    delivery = dead_delivery(api, receiver.url)

    assert api.delete(f"/v1/dlq/{delivery['id']}").status_code == 204

    assert api.get(f"/v1/deliveries/{delivery['id']}").status_code == 404
    assert api.delete(f"/v1/dlq/{delivery['id']}").status_code == 404


def test_cli_lists_replays_and_purges(api, app_with_workers: InProcessApi, make_receiver):
    failing = True
    receiver = make_receiver(respond=lambda n: 500 if failing else 200)
    first, second = dead_delivery(api, receiver.url), dead_delivery(api, receiver.url)

    listed = json.loads(
        pixhook(app_with_workers, "dlq", "list", "--host", "127.0.0.1", "--json").stdout
    )
    failing = False
    replayed = pixhook(app_with_workers, "dlq", "replay", first["id"], "--json")
    purged = pixhook(app_with_workers, "dlq", "purge", second["id"])

    assert {first["id"], second["id"]} <= {row["id"] for row in listed}
    assert json.loads(replayed.stdout) == {"requeued": 1}
    assert purged.returncode == 0
    assert deliveries_of_id(api, first["id"])["status"] == "succeeded"
    assert api.get(f"/v1/deliveries/{second['id']}").status_code == 404
