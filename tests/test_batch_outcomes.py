"""What happens to a batch's items after they start, and what the caller reads at the end:
transient failures retried on their own, failed items run again on request, every item paged,
results as JSON Lines and CSV, the summary, and `batch.started`."""

from __future__ import annotations

import base64
import csv
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from service.api.event_docs import example_body
from service.api.event_payloads import EVENTS
from service.notify import SLACK_WORDING
from tests.conftest import provider_env
from tests.support.batches import results_of, transform_item, wait_for_batch
from tests.support.images import image_bytes
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, wait_for_status
from tests.support.openai_standin import Answer, OpenAIStandIn
from tests.support.raw_servers import Response, Scripted
from tests.support.webhook_receiver import Receiver, receivers

# The fetcher's own tries of one download (service/fetch.py): a host must fail all of them
# before a job's attempt fails.
FETCH_TRIES = 3


@pytest.fixture
def app(make_app: Callable[..., InProcessApi], openai_standin: OpenAIStandIn) -> InProcessApi:
    """The API and both workers, items retried after 50 ms rather than seconds."""
    app = make_app(
        **provider_env(openai_standin),
        PIXHOOK_BATCH_ITEM_RETRY_BACKOFF="50ms",
        PIXHOOK_PROVIDER_MAX_ATTEMPTS="2",
    )
    app.start_worker("jobs")
    app.start_worker("deliveries")
    return app


@pytest.fixture
def api(app: InProcessApi) -> httpx.Client:
    return app.http(app.client.api_key, timeout=60)


@pytest.fixture
def make_receiver(app: InProcessApi) -> Iterator[Callable[..., Receiver]]:
    with receivers(app.client.webhook_secret) as create:
        yield create


class Photos(Scripted):
    """Product photos by path: a path in `failing` answers its status (503, 404...) until it is
    taken out; every other path a small JPEG. Counts requests per path."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.failing: dict[str, int] = {}
        self.fail_times: dict[str, int] = {}  # path -> fail only this many requests
        self.held = threading.Event()  # set: answers wait for `release`
        self.release = threading.Event()
        self._guard = threading.Lock()

    def _answer(self, number: int) -> Response:
        path = self.requests[number].request_line.split()[1]
        if self.held.is_set():
            self.release.wait(20)
        with self._guard:
            seen = self.fetched(path)
            status = self.failing.get(path)
            if status is not None and seen <= self.fail_times.get(path, 1 << 30):
                return Response(status, {"retry-after": "0"}, b"nope")
        return Response(200, {"content-type": "image/jpeg"}, image_bytes((60, 40)))

    def fetched(self, path: str) -> int:
        return sum(1 for r in self.requests if r.request_line.split()[1] == path)


@pytest.fixture
def photos(serve: Callable[[Photos], Photos]) -> Photos:
    return serve(Photos())


def url_items(photos: Photos, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "input": {"image": {"url": photos.url(f"/p{i}.jpg")}, "width": 20},
            "reference": f"SKU-{i}",
            "metadata": {"row": i},
            **extra,
        }
        for i in range(count)
    ]


def submit(api: httpx.Client, items: list[Any], **fields: Any) -> str:
    response = api.post("/v1/batches", json={"type": "image.transform", "items": items, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def all_items(api: httpx.Client, batch_id: str, status: str, limit: int) -> list[dict[str, Any]]:
    """Every page of the items listing, followed by its cursors."""
    items, cursor = [], None
    while True:
        params = {"status": status, "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        page = api.get(f"/v1/batches/{batch_id}/items", params=params)
        assert page.status_code == 200, page.text
        items += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


# Retries that need no human.


def test_an_image_failing_a_whole_attempt_is_tried_again_without_anyone_asking(api, photos):
    photos.failing["/p0.jpg"] = 503
    photos.fail_times["/p0.jpg"] = FETCH_TRIES  # the first attempt's every try

    batch = wait_for_batch(api, submit(api, url_items(photos, 2)))

    assert batch["counts"]["succeeded"] == 2
    assert batch["counts"]["failed"] == 0
    lines = {line["index"]: line for line in results_of(api, batch)}
    assert lines[0]["status"] == "succeeded"
    assert lines[0]["attempts"] == 2
    job = api.get(f"/v1/jobs/{lines[0]['job_id']}").json()
    assert job["attempt"] == 2
    [earlier] = job["earlier_errors"]
    assert earlier["code"] == "IMAGE_FETCH_FAILED" and earlier["retryable"] is True
    assert photos.fetched("/p0.jpg") == FETCH_TRIES + 1
    assert len(results_of(api, batch)) == 2  # one line per item: the first attempt wrote none


def test_an_item_failing_every_attempt_fails_with_its_attempts_recorded(api, photos):
    photos.failing["/p0.jpg"] = 503

    batch = wait_for_batch(api, submit(api, url_items(photos, 1), item_attempts=2))

    assert batch["item_attempts"] == 2
    [line] = results_of(api, batch)
    assert line["status"] == "failed"
    assert line["attempts"] == 2
    assert line["error"]["code"] == "IMAGE_FETCH_FAILED"
    assert line["error"]["retryable"] is True
    assert photos.fetched("/p0.jpg") == 2 * FETCH_TRIES
    job = api.get(f"/v1/jobs/{line['job_id']}").json()
    assert [e["code"] for e in job["earlier_errors"]] == ["IMAGE_FETCH_FAILED"]


def test_a_final_error_is_not_tried_again(api, photos):
    photos.failing["/p0.jpg"] = 404
    items = [*url_items(photos, 1), transform_item(width=-3)]

    batch = wait_for_batch(api, submit(api, items))

    lines = {line["index"]: line for line in results_of(api, batch)}
    assert lines[0]["status"] == "failed" and lines[0]["attempts"] == 1
    assert lines[0]["error"]["retryable"] is False
    assert photos.fetched("/p0.jpg") == 1
    assert lines[1]["error"]["code"] == "INVALID_INPUT"
    assert lines[1]["attempts"] == 0 and lines[1]["job_id"] is None


def test_a_provider_overloaded_for_a_whole_attempt_is_tried_again(api, openai_standin):
    # Both of the provider client's tries of the first attempt (PIXHOOK_PROVIDER_MAX_ATTEMPTS).
    openai_standin.script([Answer(status=503), Answer(status=503)])

    batch = wait_for_batch(api, submit_analyze(api, [analyze_item((90, 60))]))

    [line] = results_of(api, batch)
    assert line["status"] == "succeeded"
    assert line["attempts"] == 2
    assert line["output"]["attributes"]["category"] == "Footwear"


def analyze_item(size: tuple[int, int]) -> dict[str, Any]:
    image = base64.b64encode(image_bytes(size)).decode()
    return {"input": {"image": {"base64": image}, "provider": "openai"}}


def submit_analyze(api: httpx.Client, items: list[Any]) -> str:
    response = api.post("/v1/batches", json={"type": "image.analyze", "items": items})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


# Running failed items again, on request.


def test_retrying_a_batch_by_error_code_runs_only_those_items_and_rewrites_its_results(
    api, photos, make_receiver
):
    receiver = make_receiver()
    photos.failing |= {"/p1.jpg": 404, "/p2.jpg": 404}
    items = [*url_items(photos, 4), transform_item(width=-3)]
    batch_id = submit(api, items, webhook_url=receiver.url)
    first = wait_for_batch(api, batch_id)
    assert first["counts"]["failed"] == 3
    photos.failing.clear()  # the shop fixed its image host

    response = api.post(
        f"/v1/batches/{batch_id}/retry", json={"error_codes": ["IMAGE_FETCH_FAILED"]}
    )

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "running"
    assert response.json()["retries"] == 1
    assert response.json()["counts"]["failed"] == 1  # the two to run again left `failed`
    batch = wait_for_batch(api, batch_id)
    assert batch["status"] == "completed"
    assert batch["counts"]["succeeded"] == 4
    assert batch["counts"]["failed"] == 1  # refused at intake: nothing to run
    lines = results_of(api, batch)
    assert sorted(line["index"] for line in lines) == [0, 1, 2, 3, 4]
    by_index = {line["index"]: line for line in lines}
    assert by_index[1]["status"] == "succeeded" and by_index[1]["attempts"] == 2
    assert by_index[1]["reference"] == "SKU-1" and by_index[1]["metadata"] == {"row": 1}
    assert batch["summary"]["by_error_code"] == {"INVALID_INPUT": 1}
    completed = receiver.wait_for(2, timeout_s=30)
    assert [w.payload["type"] for w in completed] == ["batch.completed", "batch.completed"]
    assert completed[0].webhook_id != completed[1].webhook_id


def test_retrying_a_whole_batch_runs_every_failed_item(api, photos):
    photos.failing |= {"/p0.jpg": 404, "/p2.jpg": 403}
    batch_id = submit(api, url_items(photos, 3))
    wait_for_batch(api, batch_id)
    photos.failing.clear()

    response = api.post(f"/v1/batches/{batch_id}/retry")

    assert response.status_code == 202, response.text
    batch = wait_for_batch(api, batch_id)
    assert batch["counts"]["succeeded"] == 3
    assert batch["summary"]["success_rate"] == 1.0
    assert len(results_of(api, batch)) == 3


def test_canceling_a_retry_leaves_the_items_not_yet_run_failed(api, photos):
    photos.failing |= {f"/p{i}.jpg": 404 for i in range(4)}
    batch_id = submit(api, url_items(photos, 4), concurrency=1)
    wait_for_batch(api, batch_id)
    photos.failing.clear()
    photos.held.set()  # the first item run again is held: the rest wait their turn
    assert api.post(f"/v1/batches/{batch_id}/retry").status_code == 202

    response = api.post(f"/v1/batches/{batch_id}/cancel")

    assert response.status_code == 200, response.text
    photos.release.set()
    batch = wait_for_batch(api, batch_id)
    assert batch["status"] == "canceled"
    counts = batch["counts"]
    assert counts["failed"] >= 3  # never run again: as they were
    assert counts["succeeded"] + counts["failed"] + counts["canceled"] == 4
    lines = results_of(api, batch)
    assert sorted(line["index"] for line in lines) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"error_codes": ["IMAGE_FETCH_FAILD"]}, "UNKNOWN_ERROR_CODE", "error_codes[0]"),
        ({"error_codes": ["PROVIDER_AUTH"]}, "NOTHING_TO_RETRY", None),
        ({"error_codes": []}, "INVALID_INPUT", "error_codes"),
        ({"codes": ["X"]}, "UNKNOWN_FIELD", "codes"),
    ],
)
def test_a_retry_that_names_nothing_to_run_is_refused(api, photos, body, code, field):
    photos.failing["/p0.jpg"] = 404
    batch_id = submit(api, url_items(photos, 1))
    wait_for_batch(api, batch_id)

    response = api.post(f"/v1/batches/{batch_id}/retry", json=body)

    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == code
    assert error_of(response)["field"] == field


def test_retrying_a_running_batch_with_nothing_failed_is_refused(api, held_image):
    url, release = held_image
    batch_id = submit(api, [{"input": {"image": {"url": url}, "width": 20}}])

    response = api.post(f"/v1/batches/{batch_id}/retry")

    assert response.status_code == 422
    assert error_of(response)["code"] == "NOTHING_TO_RETRY"
    release.set()
    wait_for_batch(api, batch_id)


def test_a_failed_job_runs_again_under_the_same_id(api, photos):
    photos.failing["/solo.jpg"] = 404
    body = {"type": "image.transform", "input": {"image": {"url": photos.url("/solo.jpg")}}}
    job_id = api.post("/v1/jobs", json=body | {"reference": "SKU-9"}).json()["id"]
    assert wait_for_status(api, job_id)["status"] == "failed"
    photos.failing.clear()

    response = api.post(f"/v1/jobs/{job_id}/retry")

    assert response.status_code == 202, response.text
    assert response.json()["id"] == job_id
    assert response.json()["attempt"] == 2
    job = wait_for_status(api, job_id)
    assert job["status"] == "succeeded"
    assert job["reference"] == "SKU-9"
    assert job["earlier_errors"][0]["code"] == "IMAGE_FETCH_FAILED"
    again = api.post(f"/v1/jobs/{job_id}/retry")
    assert again.status_code == 422
    assert error_of(again)["code"] == "JOB_NOT_RETRYABLE"


def test_a_batch_items_job_is_retried_through_its_batch(api, photos):
    photos.failing["/p0.jpg"] = 404
    batch = wait_for_batch(api, submit(api, url_items(photos, 1)))
    [line] = results_of(api, batch)

    response = api.post(f"/v1/jobs/{line['job_id']}/retry")

    assert response.status_code == 422
    assert error_of(response)["code"] == "JOB_IN_BATCH"


# Reading the outcomes.


def test_failed_items_are_paged_in_full_without_gaps(api, photos):
    failing = {i for i in range(23) if i % 3 == 0}
    photos.failing |= {f"/p{i}.jpg": 404 for i in failing}
    batch_id = submit(api, url_items(photos, 23))
    wait_for_batch(api, batch_id)

    failed = all_items(api, batch_id, "failed", limit=2)
    succeeded = all_items(api, batch_id, "succeeded", limit=5)

    assert [item["index"] for item in failed] == sorted(failing)
    assert {item["index"] for item in succeeded} == set(range(23)) - failing
    first = failed[0]
    assert first["reference"] == "SKU-0" and first["metadata"] == {"row": 0}
    assert first["job_id"] and first["status"] == "failed"
    assert first["error"]["code"] == "IMAGE_FETCH_FAILED"
    assert all(item["output"]["images"][0]["url"] for item in succeeded)


def test_the_items_listing_refuses_a_bad_status_or_cursor(api, photos):
    batch_id = submit(api, url_items(photos, 1))

    for params, field in (({"status": "lost"}, "status"), ({"cursor": "x"}, "cursor")):
        response = api.get(f"/v1/batches/{batch_id}/items", params=params)
        assert response.status_code == 422
        assert error_of(response)["field"] == field


def test_results_csv_rows_join_to_products_by_reference(api, photos):
    photos.failing["/p1.jpg"] = 404
    batch = wait_for_batch(api, submit(api, url_items(photos, 3)))

    response = api.get(f"/v1/batches/{batch['id']}/results.csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = {row["reference"]: row for row in csv.DictReader(io.StringIO(response.text))}
    assert set(rows) == {"SKU-0", "SKU-1", "SKU-2"}
    assert rows["SKU-0"]["status"] == "succeeded"
    assert api.get(rows["SKU-0"]["url_default"]).status_code == 200
    assert rows["SKU-1"]["error_code"] == "IMAGE_FETCH_FAILED"
    assert rows["SKU-1"]["url_default"] == ""
    assert rows["SKU-2"]["metadata"] == '{"row":2}'


def test_the_summary_says_how_it_went(api, photos):
    photos.failing |= {"/p1.jpg": 404, "/p4.jpg": 410}
    batch = wait_for_batch(api, submit(api, url_items(photos, 6)))

    summary = batch["summary"]
    assert summary["by_status"]["succeeded"] == 4 and summary["by_status"]["failed"] == 2
    assert summary["by_error_code"] == {"IMAGE_FETCH_FAILED": 2}
    assert summary["success_rate"] == pytest.approx(4 / 6, abs=1e-3)
    latency = summary["latency"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] < 60_000
    assert summary["throughput_per_s"] > 0
    assert summary["tokens"] == {"prompt": 0, "completion": 0, "total": 0, "cost": None}


def test_the_summary_counts_the_tokens_provider_jobs_spent(api, openai_standin):
    items = [analyze_item(size) for size in ((90, 60), (70, 50))]
    openai_standin.script([])

    batch = wait_for_batch(api, submit_analyze(api, items))

    usages = [request["usage"] for request in openai_standin.requests]
    tokens = batch["summary"]["tokens"]
    assert len(usages) == 2
    assert tokens["total"] == sum(usage["total_tokens"] for usage in usages)
    assert tokens["prompt"] == sum(usage["prompt_tokens"] for usage in usages)
    assert tokens["cost"] is None


def test_a_batchs_failures_name_each_items_reference_in_its_view_and_webhook(
    api, photos, make_receiver
):
    receiver = make_receiver()
    photos.failing["/p1.jpg"] = 404
    items = [*url_items(photos, 2), transform_item(width=-3) | {"reference": "SKU-BAD"}]

    batch = wait_for_batch(api, submit(api, items, webhook_url=receiver.url))

    # The item refused at intake has no job; its failure still names its product.
    expected = [(1, "SKU-1", "IMAGE_FETCH_FAILED"), (2, "SKU-BAD", "INVALID_INPUT")]
    assert [(f["index"], f["reference"], f["error"]["code"]) for f in batch["failures"]] == expected
    failed = sorted(line["reference"] for line in results_of(api, batch) if line["error"])
    assert failed == ["SKU-1", "SKU-BAD"]
    [completed] = receiver.wait_for(1, timeout_s=30)
    assert completed.payload["data"]["failures"] == batch["failures"]
    EVENTS["batch.completed"].model_validate(completed.payload)


def test_batch_started_is_delivered_when_asked_for(api, make_receiver):
    receiver = make_receiver()

    submit(
        api,
        [transform_item() for _ in range(3)],
        webhook_url=receiver.url,
        webhook_events=["started", "completed"],
    )

    webhooks = receiver.wait_for(2, timeout_s=60)
    by_type = {w.payload["type"]: w for w in webhooks}
    assert set(by_type) == {"batch.started", "batch.completed"}
    started = by_type["batch.started"]
    assert started.verified
    assert started.payload["data"]["started_at"] is not None
    EVENTS["batch.started"].model_validate(started.payload)
    assert by_type["batch.completed"].payload["data"]["summary"]["success_rate"] == 1.0


def test_a_job_of_its_own_is_not_retried_on_its_own(api, photos):
    photos.failing["/solo.jpg"] = 503
    body = {"type": "image.transform", "input": {"image": {"url": photos.url("/solo.jpg")}}}

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert job["status"] == "failed"
    assert job["error"]["retryable"] is True  # its caller may retry it
    assert (job["attempt"], job["max_attempts"]) == (1, 1)
    assert photos.fetched("/solo.jpg") == FETCH_TRIES


@pytest.mark.parametrize("attempts", [0, 11, "3"])
def test_item_attempts_out_of_bounds_refuse_the_batch(api, attempts):
    response = api.post(
        "/v1/batches",
        json={"type": "image.transform", "items": [transform_item()], "item_attempts": attempts},
    )

    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"
    assert error_of(response)["field"] == "item_attempts"


def test_slack_words_batch_started_and_shows_the_summary():
    data = EVENTS["batch.completed"].model_validate(example_body("batch.completed"))
    completed = data.model_dump(mode="json")["data"]
    started = EVENTS["batch.started"].model_validate(example_body("batch.started"))

    line = SLACK_WORDING.summary("batch.started", started.model_dump(mode="json")["data"])
    message = SLACK_WORDING.message({}, "batch.completed", completed, "done")

    assert line == ":arrow_forward: batch `bat_5tq8w2hn3c` (`image.generate`) started: 100 items"
    text = "\n".join(block.get("text", {}).get("text", "") for block in message["blocks"])
    assert "*Success rate:* 99.0%" in text
    assert "*Latency p50 / p95:* 8.4 s / 14.9 s" in text
    assert "`PROVIDER_REJECTED` 1" in text
