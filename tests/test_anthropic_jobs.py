"""`image.analyze` with `provider: "anthropic"` through the API, against the Anthropic stand-in
over real HTTP: attributes, exact usage and cost, the streamed reply, and every failure."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.support.anthropic_standin import PRODUCT, Answer, AnthropicStandIn
from tests.support.in_process import InProcessApi
from tests.support.provider_jobs import (
    deltas,
    live_events,
    run_job,
    streamed_text,
    unique_photo,
)

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-5"
# The default list prices of claude-haiku-4-5, in US dollars per token.
HAIKU_INPUT, HAIKU_OUTPUT, HAIKU_CACHE_READ = 1.00e-6, 5.00e-6, 0.10e-6
REPLY = json.dumps(PRODUCT)


@pytest.fixture
def app_with_workers(app_with_both_providers: InProcessApi) -> InProcessApi:
    return app_with_both_providers


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


@pytest.fixture
def anthropic(anthropic_standin: AnthropicStandIn) -> AnthropicStandIn:
    """The stand-in with nothing scripted, no requests recorded and no limit."""
    anthropic_standin.script([])
    anthropic_standin.count_requests(60.0)
    return anthropic_standin


def analyze(api: httpx.Client, seed: int, **fields: Any) -> dict[str, Any]:
    photo = base64.b64encode(unique_photo(seed)).decode()
    return run_job(api, "image.analyze", image={"base64": photo}, provider="anthropic", **fields)


def billed(reported: dict[str, int]) -> dict[str, int]:
    """Anthropic's usage as pixhook counts it: cache writes are input, cache reads cached."""
    return {
        "input_tokens": reported["input_tokens"] + reported["cache_creation_input_tokens"],
        "output_tokens": reported["output_tokens"],
        "cached_input_tokens": reported["cache_read_input_tokens"],
    }


def test_a_claude_analyze_job_has_the_attributes_and_its_exact_usage_and_cost(api, anthropic):
    anthropic.script([Answer(cache_read_tokens=10, cache_write_tokens=20)])

    job = analyze(api, 1)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["attributes"] == PRODUCT
    call = job["output"]["provider"]
    assert (call["name"], call["model"], call["attempts"]) == ("anthropic", HAIKU, 1)
    [request] = anthropic.requests
    usage = billed(request["usage"])
    assert call["usage"] == usage == job["usage"]
    assert usage["cached_input_tokens"] == 10 and usage["output_tokens"] > 0
    cost = (
        usage["input_tokens"] * HAIKU_INPUT
        + usage["output_tokens"] * HAIKU_OUTPUT
        + usage["cached_input_tokens"] * HAIKU_CACHE_READ
    )
    assert call["cost_usd"] == pytest.approx(cost, abs=1e-8)
    assert job["cost_usd"] == pytest.approx(cost, abs=1e-8)
    image = next(b for b in request["body"]["messages"][0]["content"] if b["type"] == "image")
    assert image["source"]["type"] == "base64" and request["body"]["stream"] is True


def test_the_streamed_reply_reaches_the_live_events_and_its_first_token_is_timed(api, anthropic):
    anthropic.script([Answer(chunk_chars=8, chunk_delay_s=0.01)])

    job = analyze(api, 2)

    events = live_events(api, job["id"])
    assert streamed_text(events) == REPLY
    assert {piece["attempt"] for piece in deltas(events)} == {1}
    names = [frame.event for frame in events]
    assert names.index("job.output.delta") < names.index("job.completed")
    call = job["output"]["provider"]
    assert call["chunks"] == -(-len(REPLY) // 8)
    assert 0 < call["ttft_ms"] < call["latency_ms"]
    assert call["chunks_per_s"] > 0


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_only_key_fails_the_job_as_keys_exhausted(api, anthropic, status):
    anthropic.script([Answer(status)])

    job = analyze(api, 3)

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_KEYS_EXHAUSTED")
    assert len(anthropic.requests) == 1
    assert api.get("/info").json()["providers"][0]["keys"][0]["in_rotation"] is False


def test_a_429_is_retried_after_its_retry_after(api, anthropic):
    anthropic.script([Answer(429, headers={"retry-after": "1"})])

    job = analyze(api, 4)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["provider"]["attempts"] == 2
    first, second = anthropic.requests
    assert second["at"] - first["at"] >= 1.0


@pytest.mark.parametrize("status", [529, 500, 503])
def test_an_overload_or_server_error_is_retried(api, anthropic, status):
    anthropic.script([Answer(status)])

    job = analyze(api, 5)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["provider"]["attempts"] == 2
    assert [r["body"]["model"] for r in anthropic.requests] == [HAIKU, HAIKU]


def test_an_overloaded_model_falls_back_to_the_next_of_the_list(api, anthropic):
    anthropic.script([Answer(529)])

    job = analyze(api, 6, model=[HAIKU, SONNET])

    assert job["status"] == "succeeded", job["error"]
    call = job["output"]["provider"]
    assert call["model"] == SONNET
    assert call["skipped_models"] == [{"model": HAIKU, "code": "PROVIDER_UNAVAILABLE"}]
    assert [r["body"]["model"] for r in anthropic.requests] == [HAIKU, SONNET]


def test_a_bad_request_fails_at_once_as_rejected(api, anthropic):
    anthropic.script([Answer(400)])

    job = analyze(api, 7, model=[HAIKU, SONNET])

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_REJECTED")
    assert len(anthropic.requests) == 1


@pytest.mark.parametrize(
    "broken",
    [
        Answer(chunk_chars=8, cut_after=3),
        Answer(chunk_chars=8, error_after=3, error_event="overloaded_error"),
        Answer(chunk_chars=8, error_after=3, error_event="api_error"),
    ],
    ids=["cut", "overloaded-event", "api-error-event"],
)
def test_a_stream_broken_mid_way_is_retried_whole(api, anthropic, broken):
    anthropic.script([broken, Answer(chunk_chars=8)])

    job = analyze(api, 8)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["attributes"] == PRODUCT
    assert job["output"]["provider"]["attempts"] == 2
    events = live_events(api, job["id"])
    first = "".join(d["text"] for d in deltas(events) if d["attempt"] == 1)
    assert first == REPLY[: 3 * 8]
    assert streamed_text(events) == REPLY
    assert {d["attempt"] for d in deltas(events)} == {1, 2}


def test_a_garbled_stream_is_retried(api, anthropic):
    anthropic.script([Answer(malformed=True)])

    job = analyze(api, 9)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["provider"]["attempts"] == 2
    assert streamed_text(live_events(api, job["id"])) == REPLY


def test_a_stream_garbled_on_every_attempt_fails_as_a_bad_response(api, anthropic):
    anthropic.script([Answer(malformed=True)] * 4)

    job = analyze(api, 10)

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_BAD_RESPONSE")
    assert len(anthropic.requests) == 4
