"""Batches through the API and the real workers: items run as jobs, a few at a time, and the
batch ends with one results file and a signed `batch.completed` webhook."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from service.api.event_payloads import EVENTS
from tests.support.batches import SlowImages, results_of, transform_item, wait_for_batch
from tests.support.cli import pixhook
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of
from tests.support.sse import frames
from tests.support.waiting import wait_until
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


def test_a_batch_runs_every_item_and_announces_its_results(api, make_receiver):
    receiver = make_receiver()
    items = [transform_item(width=10 + i) for i in range(12)]

    response = api.post(
        "/v1/batches", json={"type": "image.transform", "items": items, "webhook_url": receiver.url}
    )

    assert response.status_code == 202, response.text
    created = response.json()
    assert created["id"].startswith("bat_")
    assert created["counts"]["total"] == 12
    [webhook] = receiver.wait_for(1, timeout_s=60)
    assert webhook.verified
    assert webhook.payload["type"] == "batch.completed"
    summary = webhook.payload["data"]
    assert summary["status"] == "completed"
    assert summary["counts"] == {
        "total": 12,
        "pending": 0,
        "in_flight": 0,
        "succeeded": 12,
        "failed": 0,
        "canceled": 0,
    }
    assert summary["progress"] == 1.0
    lines = results_of(api, summary)
    assert sorted(line["index"] for line in lines) == list(range(12))
    by_index = {line["index"]: line for line in lines}
    assert by_index[5]["status"] == "succeeded"
    assert by_index[5]["output"]["images"][0]["width"] == 15
    job = api.get(f"/v1/jobs/{by_index[5]['job_id']}").json()
    assert job["batch"] == {"id": created["id"], "index": 5}


def test_a_bad_item_fails_alone_and_the_rest_run(api):
    items = [transform_item(), transform_item(width=-3), "not an object", transform_item()]

    response = api.post("/v1/batches", json={"type": "image.transform", "items": items})

    assert response.status_code == 202, response.text
    batch = wait_for_batch(api, response.json()["id"])
    assert batch["status"] == "completed"
    assert batch["counts"]["succeeded"] == 2
    assert batch["counts"]["failed"] == 2
    failures = {f["index"]: f["error"] for f in batch["failures"]}
    assert failures[1]["field"] == "items[1].input.width"
    assert failures[1]["code"] == "INVALID_INPUT"
    assert failures[2]["field"] == "items[2]"
    lines = {line["index"]: line for line in results_of(api, batch)}
    assert lines[1]["status"] == "failed" and lines[1]["job_id"] is None
    assert lines[3]["status"] == "succeeded"


def test_csv_rows_fill_a_prompt_template_and_a_row_without_a_value_fails(api):
    rows = "name,color\nmug,red\nlamp,\nchair,oak brown\n"
    spec = {
        "type": "image.generate",
        "input": {
            "prompt": "studio photo of {name}, {color}, white background",
            "width": 256,
            "height": 256,
        },
    }

    response = api.post(
        "/v1/batches",
        data={"batch": json.dumps(spec)},
        files={"csv": ("products.csv", rows.encode(), "text/csv")},
    )

    assert response.status_code == 202, response.text
    batch = wait_for_batch(api, response.json()["id"])
    assert batch["counts"] == {
        "total": 3,
        "pending": 0,
        "in_flight": 0,
        "succeeded": 2,
        "failed": 1,
        "canceled": 0,
    }
    [failure] = batch["failures"]
    assert failure["index"] == 1
    assert failure["error"]["code"] == "TEMPLATE_FIELD_MISSING"
    assert "{color}" in failure["error"]["message"]
    lines = {line["index"]: line for line in results_of(api, batch)}
    job = api.get(f"/v1/jobs/{lines[2]['job_id']}").json()
    assert job["input"]["prompt"] == "studio photo of chair, oak brown, white background"


def test_items_in_flight_never_exceed_the_batchs_concurrency(api, serve):
    images = serve(SlowImages(delay_s=0.3))
    items = [{"input": {"image": {"url": images.url(f"/p{i}.jpg")}, "width": 20}} for i in range(8)]

    response = api.post(
        "/v1/batches", json={"type": "image.transform", "items": items, "concurrency": 2}
    )

    batch = wait_for_batch(api, response.json()["id"])
    assert batch["counts"]["succeeded"] == 8
    assert images.most_held <= 2
    assert images.most_held == 2  # and it did use its share


def test_a_single_job_is_not_stuck_behind_a_big_batch(api, serve):
    images = serve(SlowImages(delay_s=0.3))
    items = [
        {"input": {"image": {"url": images.url(f"/p{i}.jpg")}, "width": 20}} for i in range(12)
    ]
    batch_id = api.post(
        "/v1/batches", json={"type": "image.transform", "items": items, "concurrency": 2}
    ).json()["id"]

    single = api.post("/v1/jobs", json={"type": "image.transform", **transform_item()}).json()
    wait_until(
        lambda: api.get(f"/v1/jobs/{single['id']}").json()["status"] == "succeeded",
        10,
        "the single job to succeed",
    )

    assert api.get(f"/v1/batches/{batch_id}").json()["status"] == "running"
    wait_for_batch(api, batch_id)


def test_cancel_stops_the_batch_and_accounts_for_every_item(api, serve, make_receiver):
    receiver = make_receiver()
    images = serve(SlowImages(delay_s=0.5))
    items = [
        {"input": {"image": {"url": images.url(f"/p{i}.jpg")}, "width": 20}} for i in range(10)
    ]
    batch_id = api.post(
        "/v1/batches",
        json={
            "type": "image.transform",
            "items": items,
            "concurrency": 1,
            "webhook_url": receiver.url,
        },
    ).json()["id"]
    wait_until(lambda: images.holding, 10, "the first item to start")

    response = api.post(f"/v1/batches/{batch_id}/cancel")

    assert response.status_code == 200, response.text
    batch = wait_for_batch(api, batch_id)
    assert batch["status"] == "canceled"
    counts = batch["counts"]
    assert counts["canceled"] >= 9
    assert counts["succeeded"] + counts["failed"] + counts["canceled"] == 10
    assert len(results_of(api, batch)) == 10
    [webhook] = receiver.wait_for(1)
    assert webhook.payload["type"] == "batch.canceled"
    again = api.post(f"/v1/batches/{batch_id}/cancel")
    assert again.status_code == 422
    assert error_of(again)["code"] == "BATCH_ALREADY_FINISHED"


def test_progress_events_arrive_when_asked_for(api, make_receiver):
    receiver = make_receiver()
    items = [transform_item() for _ in range(20)]

    api.post(
        "/v1/batches",
        json={
            "type": "image.transform",
            "items": items,
            "webhook_url": receiver.url,
            "webhook_events": ["progress", "completed"],
        },
    )

    wait_until(
        lambda: any(r.payload["type"] == "batch.completed" for r in receiver.requests),
        60,
        "batch.completed",
    )
    progress = [r.payload for r in receiver.requests if r.payload["type"] == "batch.progress"]
    assert progress, "no batch.progress event"
    # Each shows the batch as read when the event was made: later items may have ended by then.
    assert all(0 < p["data"]["progress"] <= 1 for p in progress)
    assert len({r.webhook_id for r in receiver.requests}) == len(receiver.requests)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"type": "image.transform", "items": []}, "EMPTY_BATCH", "items"),
        ({"type": "image.transform"}, "INVALID_INPUT", "items"),
        ({"type": "image.resize", "items": [{}]}, "UNKNOWN_JOB_TYPE", "type"),
        (
            {"type": "image.transform", "items": [{}], "concurrency": 0},
            "INVALID_INPUT",
            "concurrency",
        ),
        (
            {"type": "image.transform", "items": [{}], "item_webhooks": True},
            "INVALID_INPUT",
            "item_webhooks",
        ),
        ({"type": "image.transform", "items": [{}], "colour": 1}, "UNKNOWN_FIELD", "colour"),
    ],
)
def test_a_bad_batch_is_refused_whole(api, body, code, field):
    response = api.post("/v1/batches", json=body)

    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == code
    assert error_of(response)["field"] == field


def test_too_many_items_are_refused(make_app):
    app = make_app(PIXHOOK_MAX_BATCH_ITEMS="10")
    api = app.http(app.client.api_key)

    response = api.post("/v1/batches", json={"type": "image.transform", "items": [{}] * 11})

    assert response.status_code == 422
    assert error_of(response)["code"] == "BATCH_TOO_LARGE"


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ("photo of {name", "INVALID_TEMPLATE"),
        ("photo of {0}", "INVALID_TEMPLATE"),
        ("photo of {name.__class__}", "INVALID_TEMPLATE"),
    ],
)
def test_a_broken_template_is_refused(api, template, code):
    spec = {"type": "image.generate", "input": {"prompt": template}}

    response = api.post(
        "/v1/batches",
        data={"batch": json.dumps(spec)},
        files={"csv": ("p.csv", b"name\nmug\n", "text/csv")},
    )

    assert response.status_code == 422
    assert error_of(response)["code"] == code
    assert error_of(response)["field"] == "input.prompt"


def test_another_clients_batch_is_not_found(api, app_with_workers: InProcessApi):
    batch_id = api.post(
        "/v1/batches", json={"type": "image.transform", "items": [transform_item()]}
    ).json()["id"]
    created = pixhook(app_with_workers, "clients", "create", "other-batches", "--json")
    other_key = json.loads(created.stdout)["api_key"]

    response = api.get(f"/v1/batches/{batch_id}", headers={"authorization": f"Bearer {other_key}"})

    assert response.status_code == 404
    assert error_of(response)["code"] == "BATCH_NOT_FOUND"


def test_item_webhooks_announce_each_item_and_then_the_batch(api, make_receiver):
    receiver = make_receiver()
    items = [transform_item() for _ in range(3)]

    api.post(
        "/v1/batches",
        json={
            "type": "image.transform",
            "items": items,
            "webhook_url": receiver.url,
            "item_webhooks": True,
        },
    )

    webhooks = receiver.wait_for(4, timeout_s=60)
    types = sorted(w.payload["type"] for w in webhooks)
    assert types == ["batch.completed", "job.completed", "job.completed", "job.completed"]
    indexes = sorted(
        w.payload["data"]["batch"]["index"]
        for w in webhooks
        if w.payload["type"] == "job.completed"
    )
    assert indexes == [0, 1, 2]
    assert all(w.verified for w in webhooks)
    for webhook in webhooks:  # each as docs/webhooks.md describes it
        EVENTS[webhook.payload["type"]].model_validate(webhook.payload)


def test_a_batchs_event_stream_runs_until_it_completes(api):
    items = [transform_item() for _ in range(20)]
    batch_id = api.post("/v1/batches", json={"type": "image.transform", "items": items}).json()[
        "id"
    ]

    with api.stream("GET", f"/v1/batches/{batch_id}/events", timeout=60) as response:
        assert response.status_code == 200
        received = [frame for frame in frames(response) if frame.event is not None]

    assert received[-1].event == "batch.completed"
    assert received[-1].payload["counts"]["succeeded"] == 20
    assert received[0].event == "batch.started"
    assert {frame.event for frame in received[1:-1]} <= {"batch.progress"}
    assert len({frame.id for frame in received}) == len(received)
