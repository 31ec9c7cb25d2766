"""`text.generate` through the API with both providers: the reply streamed over SSE as a browser
reads it, the whole text in the signed webhook, its pace, bad conversations, broken streams and
model fallback; against the stand-ins over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.anthropic_standin import AnthropicStandIn
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of
from tests.support.openai_standin import OpenAIStandIn
from tests.support.provider_jobs import (
    answer,
    deltas,
    live_events,
    run_job,
    streamed_text,
    unique_photo,
)
from tests.support.webhook_receiver import Receiver

PROVIDERS = ("anthropic", "openai")
ASKED = [{"role": "user", "content": "Which sneaker suits a wet city?"}]
SYSTEM = "You are a shop assistant. Answer in two sentences."


@pytest.fixture
def app_with_workers(app_with_both_providers: InProcessApi) -> InProcessApi:
    return app_with_both_providers


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


@pytest.fixture
def make_receiver(in_process_receivers: Callable[..., Receiver]) -> Callable[..., Receiver]:
    return in_process_receivers


Standin = AnthropicStandIn | OpenAIStandIn


@pytest.fixture(params=PROVIDERS)
def provider(
    request: pytest.FixtureRequest,
    openai_standin: OpenAIStandIn,
    anthropic_standin: AnthropicStandIn,
) -> tuple[str, Standin]:
    """Each provider in turn, its stand-in with nothing scripted and no limit."""
    standin: Standin = anthropic_standin if request.param == "anthropic" else openai_standin
    standin.script([])
    standin.count_requests(60.0)
    return request.param, standin


def submit(api: httpx.Client, job: dict[str, Any] | None = None, **fields: Any) -> httpx.Response:
    body = {"type": "text.generate", "input": {"messages": ASKED, **fields}, **(job or {})}
    return api.post("/v1/jobs", json=body)


def sent_usage(name: str, reported: dict[str, Any]) -> dict[str, int]:
    """The stand-in's usage as pixhook counts it."""
    if name == "anthropic":
        return {
            "input_tokens": reported["input_tokens"],
            "output_tokens": reported["output_tokens"],
            "cached_input_tokens": 0,
        }
    return {
        "input_tokens": reported["prompt_tokens"],
        "output_tokens": reported["completion_tokens"],
        "cached_input_tokens": 0,
    }


def test_the_reply_streams_over_sse_in_order_and_the_webhook_carries_the_text(
    api, make_receiver, provider
):
    name, standin = provider
    standin.script([answer(name, chunk_chars=10, chunk_delay_s=0.01)])
    receiver = make_receiver()
    created = submit(
        api,
        provider=name,
        system=SYSTEM,
        temperature=0.3,
        max_tokens=200,
        job={"webhook_url": receiver.url},
    )
    assert created.status_code == 202, created.text

    events = live_events(api, created.json()["id"])

    pieces = deltas(events)
    assert len(pieces) >= 2 and {piece["attempt"] for piece in pieces} == {1}
    assert "".join(piece["text"] for piece in pieces) == standin.text_reply
    completed = events[-1]
    assert completed.event == "job.completed"
    output = completed.payload["output"]
    assert output["text"] == standin.text_reply
    [webhook] = receiver.wait_for(1)
    assert webhook.verified and webhook.payload["type"] == "job.completed"
    assert webhook.payload["data"]["output"]["text"] == standin.text_reply
    call = output["provider"]
    chunks = -(-len(standin.text_reply) // 10)
    assert (call["name"], call["chunks"], call["attempts"]) == (name, chunks, 1)
    assert 0 < call["ttft_ms"] < call["latency_ms"]
    # A piece every 10 ms at most: never faster than that pace, and not absurdly slow.
    assert 10 < call["chunks_per_s"] <= 1.1 * chunks / ((chunks - 1) * 0.01)
    [request] = standin.requests
    assert call["usage"] == sent_usage(name, request["usage"])
    body = request["body"]
    assert (body["max_tokens"], body["temperature"], body["stream"]) == (200, 0.3, True)
    system = body["system"] if name == "anthropic" else body["messages"][0]["content"]
    assert system == SYSTEM


def test_the_provider_defaults_to_anthropic(api, anthropic_standin):
    anthropic_standin.script([])

    job = run_job(api, "text.generate", messages=ASKED)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["provider"]["name"] == "anthropic"
    assert job["output"]["provider"]["model"] == "claude-haiku-4-5"
    assert job["output"]["text"] == anthropic_standin.text_reply


def test_a_stream_cut_mid_way_is_retried_whole(api, provider):
    name, standin = provider
    standin.script([answer(name, chunk_chars=10, cut_after=2), answer(name, chunk_chars=10)])

    job = run_job(api, "text.generate", provider=name, messages=ASKED)

    assert job["status"] == "succeeded", job["error"]
    assert job["output"]["text"] == standin.text_reply
    assert job["output"]["provider"]["attempts"] == 2
    events = live_events(api, job["id"])
    first = "".join(d["text"] for d in deltas(events) if d["attempt"] == 1)
    assert first == standin.text_reply[:20]
    assert streamed_text(events) == standin.text_reply


def test_a_model_that_is_gone_falls_back_to_the_next_of_the_list(api, provider):
    name, standin = provider
    gone, kept = f"{name}-retired-model", standin.models[0]
    standin.retire(gone)
    try:
        job = run_job(api, "text.generate", provider=name, model=[gone, kept], messages=ASKED)
    finally:
        standin.restore_model(gone)

    assert job["status"] == "succeeded", job["error"]
    call = job["output"]["provider"]
    assert call["model"] == kept
    assert call["skipped_models"] == [{"model": gone, "code": "PROVIDER_REJECTED"}]
    assert [r["body"]["model"] for r in standin.requests] == [gone, kept]


USER, ASSISTANT = "user", "assistant"


def conversation(*roles: str) -> list[dict[str, str]]:
    return [{"role": role, "content": f"message {i}"} for i, role in enumerate(roles)]


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        (
            {"messages": conversation(ASSISTANT, USER)},
            "INVALID_CONVERSATION",
            "input.messages[0].role",
        ),
        (
            {"messages": conversation(USER, ASSISTANT)},
            "INVALID_CONVERSATION",
            "input.messages[1].role",
        ),
        (
            {"messages": conversation(USER, USER, ASSISTANT, USER)},
            "INVALID_CONVERSATION",
            "input.messages[1].role",
        ),
        ({"messages": []}, "INVALID_INPUT", "input.messages"),
        (
            {"messages": conversation(*[USER, ASSISTANT] * 50, USER)},
            "INVALID_INPUT",
            "input.messages",
        ),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            "INVALID_INPUT",
            "input.messages[0].role",
        ),
        (
            {"messages": [{"role": USER, "content": ""}]},
            "INVALID_INPUT",
            "input.messages[0].content",
        ),
        ({"temperature": 1.5}, "INVALID_INPUT", "input.temperature"),
        ({"temperature": -0.1}, "INVALID_INPUT", "input.temperature"),
        ({"max_tokens": 0}, "INVALID_INPUT", "input.max_tokens"),
        ({"max_tokens": 8193}, "INVALID_INPUT", "input.max_tokens"),
        ({"provider": "mistral"}, "INVALID_INPUT", "input.provider"),
        ({"top_p": 0.9}, "UNKNOWN_FIELD", "input.top_p"),
    ],
)
def test_a_bad_input_is_refused_with_its_field(api, fields, code, field):
    response = submit(api, **fields)

    assert response.status_code == 422, response.text
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)


NO_IMAGE = {
    "code": "INVALID_INPUT",
    "message": "text.generate takes no input image",
    "field": "input.image",
}


def test_an_image_is_refused(api):
    photo = {"base64": base64.b64encode(unique_photo(1)).decode()}

    response = submit(api, image=photo)

    assert response.status_code == 422, response.text
    assert error_of(response) == NO_IMAGE


def test_an_uploaded_image_is_refused(api):
    job = {"type": "text.generate", "input": {"messages": ASKED}}
    files = {"image": ("a.png", unique_photo(1), "image/png")}

    response = api.post("/v1/jobs", data={"job": json.dumps(job)}, files=files)

    assert response.status_code == 422, response.text
    assert error_of(response) == NO_IMAGE
