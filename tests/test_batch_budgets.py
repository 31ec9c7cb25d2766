"""What provider jobs cost, batch by batch and day by day, and budgets that pause a batch: run
through the API against the OpenAI stand-in, its model priced so that each call costs $0.97."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image

from service.batches import engine
from service.batches.items import item_job_id
from service.batches.pausing import resume_batches_paused_for_keys
from service.lifecycle import end_job
from service.providers.errors import PROVIDER_KEYS_EXHAUSTED
from service.runtime import Runtime
from tests.conftest import provider_env
from tests.support.batches import wait_for_batch
from tests.support.in_process import InProcessApi
from tests.support.jobs import wait_for_status
from tests.support.openai_standin import OpenAIStandIn
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver, receivers

MODEL = "standin-budgeted"
# $10,000 per million tokens, input and output alike: each call (~500 tokens) costs ~$5.
PRICE_PER_TOKEN = 0.01
PRICES = json.dumps({f"openai/{MODEL}": {"input": 10_000, "output": 10_000}})


@pytest.fixture
def app_with_workers(
    make_app: Callable[..., InProcessApi], openai_standin: OpenAIStandIn
) -> InProcessApi:
    """conftest's, with the stand-in's model priced."""
    app = make_app(**provider_env(openai_standin), PIXHOOK_PROVIDER_PRICES=PRICES)
    app.start_worker("jobs")
    app.start_worker("deliveries")
    return app


@pytest.fixture
def app(app_with_workers: InProcessApi) -> InProcessApi:
    return app_with_workers


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


@pytest.fixture
def make_receiver(in_process_receivers: Callable[..., Receiver]) -> Callable[..., Receiver]:
    return in_process_receivers


def photo(seed: int) -> str:
    """A photo no other item sends, so that pixhook's answer cache cannot answer for it."""
    buffer = io.BytesIO()
    Image.new("RGB", (80 + seed, 60), (seed * 37 % 256, seed * 11 % 256, 90)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def item(seed: int, model: str = MODEL) -> dict[str, Any]:
    return {"input": {"image": {"base64": photo(seed)}, "provider": "openai", "model": model}}


def submit(api: httpx.Client, items: list[dict[str, Any]], **fields: Any) -> httpx.Response:
    return api.post("/v1/batches", json={"type": "image.analyze", "items": items, **fields})


def events_of(receiver: Receiver, event_type: str) -> list[dict[str, Any]]:
    return [r.payload for r in receiver.requests if r.verified and r.payload["type"] == event_type]


def wait_for_event(receiver: Receiver, event_type: str) -> dict[str, Any]:
    found = wait_until(lambda: events_of(receiver, event_type), 30, f"a {event_type} webhook")
    return found[0]


def call_usage(standin: OpenAIStandIn) -> dict[str, int]:
    """What one call of this module cost in tokens, as pixhook counts them: every item's photo
    is one tile and every answer the same, so every call's usage is the same."""
    reported = standin.requests[-1]["usage"]
    return {
        "input_tokens": reported["prompt_tokens"],
        "output_tokens": reported["completion_tokens"],
        "cached_input_tokens": 0,
    }


def times(usage: dict[str, int], calls: int) -> dict[str, int]:
    return {kind: tokens * calls for kind, tokens in usage.items()}


def cost_of(usage: dict[str, int]) -> float:
    return (usage["input_tokens"] + usage["output_tokens"]) * PRICE_PER_TOKEN


def runtime_of(app: InProcessApi) -> Runtime:
    runtime: Runtime = app.app.state.runtime
    return runtime


def test_a_batch_reaching_its_budget_pauses_and_resumes_with_a_higher_one(
    api, make_receiver, openai_standin
):
    receiver = make_receiver()
    wait_for_status(
        api, api.post("/v1/jobs", json={"type": "image.analyze", **item(90)}).json()["id"]
    )
    usage = call_usage(openai_standin)
    call = cost_of(usage)
    paid_before = openai_standin.paid_calls(MODEL)
    items = [item(seed) for seed in range(5)]
    budget = 2.5 * call
    created = submit(api, items, concurrency=1, max_cost=budget, webhook_url=receiver.url)
    assert created.status_code == 202, created.text

    paused = wait_for_batch(api, created.json()["id"])

    # The third item brought it from 2 calls' cost to 3: past 2.5, with two items not started.
    assert paused["status"] == "paused" and paused["paused_reason"] == "budget"
    assert paused["counts"] | {"total": 5} == {
        "total": 5,
        "pending": 2,
        "in_flight": 0,
        "succeeded": 3,
        "failed": 0,
        "canceled": 0,
    }
    assert paused["cost_usd"] == pytest.approx(3 * call)
    assert openai_standin.paid_calls(MODEL) - paid_before == 3
    event = wait_for_event(receiver, "batch.paused")
    assert event["data"]["paused_reason"] == "budget"
    assert event["data"]["max_cost"] == pytest.approx(budget)
    assert event["data"]["cost_usd"] == pytest.approx(3 * call)

    refused = api.post(f"/v1/batches/{paused['id']}/resume", json={"max_cost": 2.9 * call})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "BUDGET_REACHED"

    resumed = api.post(f"/v1/batches/{paused['id']}/resume", json={"max_cost": 10 * call})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["max_cost"] == pytest.approx(10 * call)

    batch = wait_for_batch(api, paused["id"])
    assert batch["status"] == "completed" and batch["counts"]["succeeded"] == 5
    assert batch["usage"] == times(usage, 5)
    assert batch["cost_usd"] == pytest.approx(5 * call)
    assert batch["paused_reason"] is None and batch["paused_at"] is None
    assert wait_for_event(receiver, "batch.resumed")["data"]["status"] == "running"
    assert wait_for_event(receiver, "batch.completed")["data"]["cost_usd"] == pytest.approx(
        5 * call
    )


def test_a_paused_batch_can_be_canceled(api):
    created = submit(api, [item(seed) for seed in range(3)], concurrency=1, max_cost=0.5)
    paused = wait_for_batch(api, created.json()["id"])
    assert paused["status"] == "paused"

    canceled = api.post(f"/v1/batches/{paused['id']}/cancel")

    assert canceled.status_code == 200, canceled.text
    batch = wait_for_batch(api, paused["id"])
    assert batch["status"] == "canceled"
    assert batch["counts"]["succeeded"] == 1 and batch["counts"]["canceled"] == 2


def test_resuming_a_batch_that_is_not_paused_is_refused(api):
    created = submit(api, [item(seed) for seed in range(2)], max_cost=100)
    batch = wait_for_batch(api, created.json()["id"])
    assert batch["status"] == "completed"

    response = api.post(f"/v1/batches/{batch['id']}/resume")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "BATCH_NOT_PAUSED"


@pytest.mark.parametrize("max_cost", [-1, 0, 5e-324, 1e12, "ten"])
def test_a_budget_must_be_a_positive_number_of_dollars(api, max_cost):
    response = submit(api, [item(0)], max_cost=max_cost)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "max_cost"


def test_a_budgeted_batch_refuses_the_items_of_a_model_without_a_price(api):
    created = submit(api, [item(0), item(1, model="standin-unpriced")], max_cost=100)

    batch = wait_for_batch(api, created.json()["id"])

    assert batch["counts"]["succeeded"] == 1
    [failure] = batch["failures"]
    assert failure["index"] == 1
    assert failure["error"]["code"] == "MODEL_NOT_PRICED"
    assert "openai/standin-unpriced" in failure["error"]["message"]


def test_an_items_end_reported_twice_is_counted_once(app, api, openai_standin):
    created = submit(api, [item(seed) for seed in range(2)])
    batch_id = created.json()["id"]
    wait_for_batch(api, batch_id)
    runtime = runtime_of(app)

    async def end_again() -> None:
        job = await runtime.jobs.get(item_job_id(batch_id, 0))
        assert job is not None
        await engine.job_ended(runtime, job)

    app.call(end_again)

    batch = api.get(f"/v1/batches/{batch_id}").json()
    usage = call_usage(openai_standin)
    assert batch["cost_usd"] == pytest.approx(2 * cost_of(usage))
    assert batch["usage"] == times(usage, 2)


def test_a_job_shows_what_it_cost_and_a_cached_answer_costs_nothing(api, openai_standin):
    body = {"type": "image.analyze", "input": item(7)["input"]}
    first = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])
    again = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    usage = call_usage(openai_standin)
    assert first["usage"] == usage
    assert first["cost_usd"] == pytest.approx(cost_of(usage))
    assert again["output"]["provider"]["cached"] is True
    assert again["cost_usd"] == 0
    assert again["usage"] == {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0}


def test_a_job_without_a_provider_call_costs_null(api):
    body = {"type": "image.analyze", "input": {"image": {"base64": photo(3)}}}
    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert job["usage"] is None and job["cost_usd"] is None


def test_a_clients_daily_totals_count_its_provider_jobs(api, openai_standin):
    body = {"type": "image.analyze", "input": item(11)["input"]}
    for _ in range(2):  # the second answer comes from the cache: a job, at no cost
        wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])
    wait_for_batch(api, submit(api, [item(12), item(13)]).json()["id"])
    today = datetime.now(UTC).date().isoformat()

    report = api.get("/v1/usage", params={"from": today, "to": today})

    assert report.status_code == 200, report.text
    [day] = report.json()["days"]
    usage = call_usage(openai_standin)
    assert day == {
        "day": today,
        "usage": times(usage, 3),
        "cost_usd": pytest.approx(3 * cost_of(usage)),
        "jobs": 4,
        "unpriced_jobs": 0,
    }
    assert report.json()["total"]["jobs"] == 4


def test_the_usage_route_lists_every_day_of_its_range(api):
    report = api.get("/v1/usage", params={"from": "2026-01-30", "to": "2026-02-02"})

    assert report.status_code == 200
    days = [day["day"] for day in report.json()["days"]]
    assert days == ["2026-01-30", "2026-01-31", "2026-02-01", "2026-02-02"]
    assert report.json()["total"]["cost_usd"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "from"),
    ],
)
def test_the_usage_route_refuses_a_bad_range(api, params, field):
    response = api.get("/v1/usage", params=params)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_an_item_failed_for_refused_keys_pauses_its_batch_and_a_worker_with_keys_resumes_it(
    make_app, openai_standin
):
    """The pause on PROVIDER_KEYS_EXHAUSTED through the batch engine's own path: the item's job
    is ended with that code as the runner ends a failed job, before any worker ran it."""
    app = make_app(**provider_env(openai_standin), PIXHOOK_PROVIDER_PRICES=PRICES)
    api = app.http(app.client.api_key, timeout=60)
    with receivers(app.client.webhook_secret) as create:
        receiver = create()
        created = submit(api, [item(20), item(21)], concurrency=1, webhook_url=receiver.url)
        batch_id = created.json()["id"]
        runtime = runtime_of(app)
        error = {"code": PROVIDER_KEYS_EXHAUSTED, "message": "every key was refused"}
        app.call(lambda: end_job(runtime, item_job_id(batch_id, 0), "failed", error=error))

        paused = api.get(f"/v1/batches/{batch_id}").json()
        assert paused["status"] == "paused"
        assert (paused["paused_reason"], paused["paused_provider"]) == ("keys", "openai")
        assert paused["counts"]["failed"] == 0 and paused["counts"]["pending"] == 2

        # A jobs worker's start checks the keys: openai has one in rotation, so the batch resumes.
        app.start_worker("jobs")
        app.start_worker("deliveries")

        # The check runs beside the worker's start: wait for it before waiting for the end (a
        # paused batch is not running, so wait_for_batch would return at once).
        def resumed() -> bool:
            return bool(api.get(f"/v1/batches/{batch_id}").json()["status"] != "paused")

        wait_until(resumed, 30, "the worker's key check to resume the batch")
        batch = wait_for_batch(api, batch_id)
        assert batch["status"] == "completed"
        assert batch["counts"]["succeeded"] == 2 and batch["counts"]["failed"] == 0
        first = api.get(f"/v1/jobs/{item_job_id(batch_id, 0)}").json()
        assert first["attempt"] == 2
        assert first["earlier_errors"][0]["code"] == PROVIDER_KEYS_EXHAUSTED
        assert wait_for_event(receiver, "batch.paused")["data"]["paused_provider"] == "openai"
        wait_for_event(receiver, "batch.resumed")


def test_only_batches_paused_for_that_providers_keys_are_resumed(app, api):
    created = submit(api, [item(seed) for seed in range(3)], concurrency=1, max_cost=0.5)
    paused = wait_for_batch(api, created.json()["id"])
    assert paused["paused_reason"] == "budget"

    resumed = app.call(lambda: resume_batches_paused_for_keys(runtime_of(app), "openai"))

    assert resumed == []
    assert api.get(f"/v1/batches/{paused['id']}").json()["status"] == "paused"
