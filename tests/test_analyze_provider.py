"""`image.analyze` with `provider: "openai"` against the stand-in vision provider."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from PIL import Image
from redis.asyncio import Redis

from service.cli.devstack import EmbeddedRedis
from service.config import ProviderSettings, Settings
from service.imaging.decode_budget import DecodeBudget
from service.jobs.model import Job
from service.providers.chat import ChatRequest, Message, TextPart
from service.providers.openai import OpenAIWire, provider_http
from service.providers.wire import Endpoint
from service.storage import open_storage
from service.tasks import analyze as analyze_task
from service.tasks.context import TaskContext
from service.tasks.streamed_text import Deltas
from tests.support.cli import pixhook
from tests.support.images import image_bytes
from tests.support.jobs import error_of, wait_for_status
from tests.support.openai_standin import API_KEY, PRODUCT, Answer
from tests.support.webhook_receiver import Receiver


def billed(reported: dict[str, Any]) -> dict[str, int]:
    """The stand-in's usage as pixhook counts it: OpenAI's prompt tokens less the cached ones."""
    cached = (reported.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return {
        "input_tokens": reported["prompt_tokens"] - cached,
        "output_tokens": reported["completion_tokens"],
        "cached_input_tokens": cached,
    }


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API and both workers in this process: these jobs and webhooks cross no process."""
    return in_process_api


@pytest.fixture
def make_receiver(
    in_process_receivers: Callable[..., Receiver],
) -> Callable[..., Receiver]:
    return in_process_receivers


Emitted = list[tuple[str, dict[str, Any]]]


def analyze(api: httpx.Client, image: bytes, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "image.analyze",
        "input": {
            "image": {"base64": base64.b64encode(image).decode()},
            "provider": "openai",
            **fields,
        },
    }
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def unique_photo(seed: int, size: tuple[int, int] = (300, 200)) -> bytes:
    """A photo no other test sends, so the attribute cache cannot answer for it."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed % 256, (seed * 7) % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def output_deltas(redis_server: EmbeddedRedis, job_id: str) -> list[dict[str, Any]]:
    """The job's streamed text, as the SSE endpoint reads it from the job's event stream."""
    with redis.Redis.from_url(redis_server.url) as connection:
        entries = connection.xrange(f"pixhook:events:{job_id}")
    return [
        json.loads(fields[b"data"])
        for _id, fields in entries
        if fields[b"type"] == b"job.output.delta"
    ]


@pytest.fixture
def run_analyze(redis_server, openai_standin, tmp_path) -> Callable[..., Any]:
    """Runs the image.analyze task in this process, recording what it emits instead of streaming
    it; the provider is the stand-in, Redis the in-process apps' (under a model of its own)."""

    def run(image: bytes, **providers: Any) -> tuple[dict[str, Any], Emitted]:
        emitted: Emitted = []

        async def emit(event_type: str, data: dict[str, Any]) -> str:
            emitted.append((event_type, data))
            return f"{len(emitted)}-0"

        async def main() -> dict[str, Any]:
            settings = Settings(
                providers=ProviderSettings(
                    openai_base_url=openai_standin.base_url,
                    openai_api_key=API_KEY,
                    backoff_s=0.05,
                    **providers,
                )
            )
            raw = analyze_task.AnalyzeInput(provider="openai", model="standin-task")
            params = analyze_task.parse_input(raw, settings)
            job = Job("job_task", "image.analyze", "cli_task", params, None, time.time())
            storage = open_storage(f"local:{tmp_path}", "k" * 16, 60, "http://127.0.0.1")
            connection = Redis.from_url(redis_server.url)
            try:
                async with provider_http() as http:
                    budget = DecodeBudget(settings.jobs.decode_budget_bytes)
                    context = TaskContext(storage, settings, connection, emit, http, budget)
                    return await analyze_task.run(job, image, context)
            finally:
                await connection.aclose()

        return asyncio.run(main()), emitted

    return run


def sent_image(request: dict[str, Any]) -> Image.Image:
    url = request["body"]["messages"][-1]["content"][1]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_attributes_come_back_with_usage_and_the_local_analysis(api, openai_standin):
    openai_standin.script([])

    job = analyze(api, unique_photo(1))

    assert job["status"] == "succeeded", job["error"]
    output = job["output"]
    assert output["attributes"] == PRODUCT
    assert output["analysis"]["width"] == 300
    assert output["provider"]["usage"] == billed(openai_standin.requests[0]["usage"])
    assert output["provider"]["cached"] is False and output["provider"]["latency_ms"] > 0


def test_large_photo_is_downscaled_and_sent_as_jpeg(api, openai_standin):
    openai_standin.script([])

    analyze(api, unique_photo(2, size=(4000, 1000)))

    image = sent_image(openai_standin.requests[0])
    assert (image.format, image.size) == ("JPEG", (2048, 512))


def test_the_same_photo_is_not_paid_for_twice(api, openai_standin):
    photo = unique_photo(3)
    analyze(api, photo)
    openai_standin.script([])

    again = analyze(api, photo)

    assert again["output"]["provider"]["cached"] is True
    assert again["output"]["attributes"] == PRODUCT
    assert openai_standin.requests == []


def test_code_fenced_answer_is_accepted(api, openai_standin):
    openai_standin.script([Answer(content="```json\n" + json.dumps(PRODUCT) + "\n```")])

    job = analyze(api, unique_photo(4))

    assert job["output"]["attributes"]["category"] == "Footwear"


def test_known_brands_come_back_as_logos(api, openai_standin):
    logo = {
        "brand": "acme",
        "confidence": 0.93,
        "box": {"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.1},
    }
    answer = PRODUCT | {"brand_detected": "Acme", "logos": [logo]}
    openai_standin.script([Answer(content=json.dumps(answer))])

    job = analyze(api, unique_photo(5), known_brands=["Acme", "Globex"])

    assert job["output"]["attributes"]["logos"] == [logo | {"brand": "Acme"}]
    assert "Globex" in openai_standin.requests[0]["body"]["messages"][-1]["content"][0]["text"]


@pytest.mark.parametrize(
    ("answers", "code"),
    [
        ([Answer(content="It looks like a shoe to me.")], "PROVIDER_BAD_RESPONSE"),
        ([Answer(500)] * 4, "PROVIDER_UNAVAILABLE"),
    ],
)
def test_provider_failures_fail_the_job_with_a_code(api, openai_standin, answers, code):
    openai_standin.script(answers)

    job = analyze(api, unique_photo(10 + len(code)))

    assert (job["status"], job["error"]["code"]) == ("failed", code)


def test_a_refused_only_key_leaves_the_rotation_until_the_operator_puts_it_back(
    api, app_with_workers, openai_standin
):
    openai_standin.script([Answer(401)])

    refused = analyze(api, unique_photo(31))
    out = api.get("/info").json()["providers"]
    out_metrics = api.get("/metrics").text
    openai_standin.script([])
    still_out = analyze(api, unique_photo(32))
    calls_while_out = len(openai_standin.requests)
    env = app_with_workers.environ
    reinstated = pixhook(app_with_workers, "providers", "reinstate", "openai", env=env)
    after = analyze(api, unique_photo(33))

    assert (refused["status"], refused["error"]["code"]) == ("failed", "PROVIDER_KEYS_EXHAUSTED")
    assert "…ndin" in refused["error"]["message"]
    [openai] = [p for p in out if p["name"] == "openai"]
    assert [(k["hint"], k["in_rotation"], k["status"]) for k in openai["keys"]] == [
        ("…ndin", False, 401)
    ]
    assert still_out["error"]["code"] == "PROVIDER_KEYS_EXHAUSTED"
    assert calls_while_out == 0  # no call is made with a key out of rotation
    assert 'pixhook_provider_keys{provider="openai",state="out"} 1.0' in out_metrics
    assert reinstated.returncode == 0, reinstated.stderr
    assert "…ndin" in reinstated.stdout
    assert after["status"] == "succeeded"


@pytest.mark.parametrize("refusal", [Answer(404), Answer(529), Answer(500), Answer(503)])
def test_a_model_that_is_gone_or_overloaded_falls_back_to_the_next(api, openai_standin, refusal):
    # A 5xx moves on after two attempts; a 404 or an overload at once.
    openai_standin.script([refusal] * (2 if refusal.status in (500, 503) else 1))

    job = analyze(api, unique_photo(40 + refusal.status), model=["standin-gone", "standin-next"])

    assert job["status"] == "succeeded", job["error"]
    provider = job["output"]["provider"]
    assert provider["model"] == "standin-next"
    code = "PROVIDER_REJECTED" if refusal.status == 404 else "PROVIDER_UNAVAILABLE"
    assert provider["skipped_models"] == [{"model": "standin-gone", "code": code}]
    assert [r["body"]["model"] for r in openai_standin.requests][-1] == "standin-next"


def test_the_last_model_of_a_list_fails_the_job_with_its_own_error(api, openai_standin):
    openai_standin.script([Answer(404), Answer(404)])

    job = analyze(api, unique_photo(48), model=["standin-gone", "standin-also-gone"])

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_REJECTED")
    assert [r["body"]["model"] for r in openai_standin.requests] == [
        "standin-gone",
        "standin-also-gone",
    ]


def test_a_bad_request_does_not_fall_back(api, openai_standin):
    openai_standin.script([Answer(400)])

    job = analyze(api, unique_photo(49), model=["standin-a", "standin-b"])

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_REJECTED")
    assert len(openai_standin.requests) == 1


def test_usage_cost_and_time_to_first_token_reach_metrics(api, app_with_workers, openai_standin):
    openai_standin.script([])
    job = analyze(api, unique_photo(50), model="gpt-4o-mini")

    metrics = app_with_workers.http().get("/metrics").text

    usage = billed(openai_standin.requests[0]["usage"])
    assert job["output"]["provider"]["cost_usd"] == pytest.approx(
        (usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1_000_000
    )
    labels = 'model="gpt-4o-mini",provider="openai"'
    for kind in ("input", "output"):
        count = usage[f"{kind}_tokens"]
        assert f'pixhook_provider_tokens_total{{kind="{kind}",{labels}}} {count}.0' in metrics
    cost = re.search(rf"pixhook_provider_cost_total{{{labels}}} (\S+)", metrics)
    assert cost and float(cost[1]) == pytest.approx(job["output"]["provider"]["cost_usd"])
    assert f"pixhook_provider_ttft_seconds_count{{{labels}}} 1.0" in metrics
    assert f"pixhook_provider_stream_chunks_total{{{labels}}}" in metrics


def test_rate_limited_provider_is_retried(api, openai_standin):
    openai_standin.script([Answer(429, {"retry-after": "1"})])

    job = analyze(api, unique_photo(6))

    assert job["status"] == "succeeded"
    assert job["output"]["provider"]["attempts"] == 2


def test_known_brands_must_be_names(api):
    body = {
        "type": "image.analyze",
        "input": {
            "image": {"base64": base64.b64encode(image_bytes()).decode()},
            "known_brands": "Acme",
        },
    }

    response = api.post("/v1/jobs", json=body)

    assert (response.status_code, error_of(response)["field"]) == (422, "input.known_brands")


def test_insufficient_quota_fails_at_once_without_retrying(api, openai_standin):
    openai_standin.script([Answer(429, error_code="insufficient_quota")])

    job = analyze(api, unique_photo(7))

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_REJECTED")
    assert len(openai_standin.requests) == 1


# Streaming (the default, PIXHOOK_PROVIDER_STREAM=true)


def test_streamed_reply_reaches_the_job_event_stream_in_order(api, redis_server, openai_standin):
    openai_standin.script([Answer(chunk_chars=8, chunk_delay_s=0.02)])

    job = analyze(api, unique_photo(20))

    deltas = output_deltas(redis_server, job["id"])
    assert job["output"]["attributes"] == PRODUCT
    assert "".join(d["text"] for d in deltas) == json.dumps(PRODUCT)
    # ~32 pieces over ~0.7 s, coalesced into pieces of about 100 ms
    assert 2 <= len(deltas) < len(json.dumps(PRODUCT)) / 8 / 2


def test_time_to_first_token_is_recorded(api, openai_standin):
    openai_standin.script([Answer(chunk_chars=1000, chunk_delay_s=0.3)])

    job = analyze(api, unique_photo(21))

    provider = job["output"]["provider"]
    assert 300 <= provider["ttft_ms"] <= provider["latency_ms"]
    assert provider["usage"] == billed(openai_standin.requests[0]["usage"])


@pytest.mark.parametrize(
    "broken", [Answer(cut_after=2), Answer(malformed=True)], ids=["cut", "garbled"]
)
def test_a_broken_stream_is_retried_whole(api, redis_server, openai_standin, broken):
    openai_standin.script([broken])

    job = analyze(api, unique_photo(22 + broken.malformed))

    assert (job["status"], job["output"]["provider"]["attempts"]) == ("succeeded", 2)
    retried = [d["text"] for d in output_deltas(redis_server, job["id"]) if d["attempt"] == 2]
    assert "".join(retried) == json.dumps(PRODUCT)


@pytest.mark.parametrize(
    "broken", [Answer(cut_after=2), Answer(malformed=True)], ids=["cut", "garbled"]
)
def test_a_stream_that_keeps_breaking_fails_as_a_bad_response(api, openai_standin, broken):
    openai_standin.script([broken] * 4)

    job = analyze(api, unique_photo(24 + broken.malformed))

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_BAD_RESPONSE")
    assert len(openai_standin.requests) == 4


def test_a_stalled_stream_times_out_and_is_retried(api, openai_standin):
    # The provider timeout is 2 s (as on the stack); the first piece of text comes after 2.5 s.
    openai_standin.script([Answer(chunk_chars=1000, chunk_delay_s=2.5)])

    job = analyze(api, unique_photo(26))

    assert (job["status"], job["output"]["provider"]["attempts"]) == ("succeeded", 2)


def test_task_emits_deltas_in_order_that_join_to_the_reply(run_analyze, openai_standin):
    openai_standin.script([Answer(chunk_chars=4, chunk_delay_s=0.01)])

    output, emitted = run_analyze(unique_photo(30))

    assert {event_type for event_type, _ in emitted} == {"job.output.delta"}
    assert "".join(data["text"] for _, data in emitted) == json.dumps(PRODUCT)
    assert output["attributes"] == PRODUCT


def test_task_asks_for_a_stream_with_usage(run_analyze, openai_standin):
    openai_standin.script([])

    run_analyze(unique_photo(31))

    body = openai_standin.requests[0]["body"]
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})


def test_task_makes_a_plain_call_when_streaming_is_off(run_analyze, openai_standin):
    openai_standin.script([])

    output, emitted = run_analyze(unique_photo(32), stream=False)

    assert "stream" not in openai_standin.requests[0]["body"]
    assert (output["attributes"], emitted) == (PRODUCT, [])
    usage = billed(openai_standin.requests[0]["usage"])
    assert (output["provider"]["ttft_ms"], output["provider"]["usage"]) == (None, usage)


@pytest.mark.parametrize(("raw", "streams"), [("false", False), ("0", False), ("true", True)])
def test_streaming_is_chosen_by_provider_stream(raw, streams):
    assert Settings.from_env({"PIXHOOK_PROVIDER_STREAM": raw}).providers.stream is streams


def test_cached_attributes_do_not_stream(run_analyze, openai_standin):
    photo = unique_photo(33)
    run_analyze(photo)
    openai_standin.script([])

    output, emitted = run_analyze(photo)

    assert (output["provider"]["cached"], emitted, openai_standin.requests) == (True, [], [])


def test_deltas_are_coalesced_into_few_events():
    emitted: Emitted = []

    async def emit(event_type: str, data: dict[str, Any]) -> str:
        emitted.append((event_type, data))
        return "0-0"

    async def main() -> None:
        deltas = Deltas(emit)
        for number in range(1000):
            await deltas.add(f"{number % 10}", 1)
        await deltas.flush()

    asyncio.run(main())

    assert 5 <= len(emitted) <= 6  # one right away, then every 200 characters
    assert "".join(data["text"] for _, data in emitted) == "0123456789" * 100


def test_a_server_that_ignores_stream_is_read_in_one_piece():
    usage = {"prompt_tokens": 850, "completion_tokens": 120, "total_tokens": 970}
    reply = {"choices": [{"message": {"content": "one piece"}}], "usage": usage}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=reply))
    pieces: list[str] = []

    async def forward(text: str) -> None:
        pieces.append(text)

    async def main() -> str:
        request = ChatRequest((Message("user", (TextPart("hello"),)),))
        async with httpx.AsyncClient(transport=transport) as http:
            endpoint = Endpoint("http://provider", API_KEY, 10)
            answer = await OpenAIWire().send(http, endpoint, "mock-model", request, forward)
        assert answer.usage.output_tokens == usage["completion_tokens"]
        return answer.text

    assert asyncio.run(main()) == "one piece"
    assert pieces == ["one piece"]


def cutout(seed: int) -> bytes:
    """A product cut out of its background: an opaque square on fully transparent pixels."""
    image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    image.paste((seed % 256, 40, 40, 255), (100, 50, 200, 150))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_transparent_photo_reaches_the_model_on_white(api, openai_standin):
    """Issue 15 item 7: transparent pixels were sent black, so the model judged a product on a
    black backdrop (and the answer was cached for 30 days)."""
    openai_standin.script([])

    analyze(api, cutout(11))

    image = sent_image(openai_standin.requests[0]).convert("RGB")
    background, product = image.getpixel((5, 5)), image.getpixel((150, 100))
    assert isinstance(background, tuple) and isinstance(product, tuple)
    assert min(background) >= 250
    assert product[1] < 80  # the product itself is untouched


def test_answers_cached_from_a_black_background_are_not_served(api, redis_server, openai_standin):
    """Issue 15 item 7: an answer cached from the black-background upload of old must never be
    served again, though the photo and the prompt are the same."""
    photo = cutout(12)
    black = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(black, "JPEG", quality=85)
    digest, no_brands = hashlib.sha256(black.getvalue()).hexdigest(), hashlib.sha256(b"")
    old_key = f"pixhook:vision:{digest}:ecommerce-v1:gpt-4o-mini:{no_brands.hexdigest()[:16]}"
    wrong = {"attributes": PRODUCT | {"description": "A product on black."}, "provider": {}}
    with redis.Redis.from_url(redis_server.url) as connection:
        connection.set(old_key, json.dumps(wrong), ex=600)
    openai_standin.script([])

    job = analyze(api, photo)

    assert job["output"]["provider"]["cached"] is False
    assert job["output"]["attributes"] == PRODUCT


def test_the_upload_stays_within_5_mb_whatever_the_max_side(run_analyze, openai_standin):
    """Issue 15 item 7: the preparation promises at most 5 MB to the provider, but with a large
    PIXHOOK_VISION_MAX_SIDE a detailed photo went up at whatever size it encoded to."""
    size = (3200, 2400)  # of pure noise: about 5.8 MB as a JPEG of quality 85
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, "BMP")
    openai_standin.script([])

    run_analyze(buffer.getvalue(), vision_max_side=8192)

    url = openai_standin.requests[0]["body"]["messages"][-1]["content"][1]["image_url"]["url"]
    uploaded_bytes = len(base64.b64decode(url.split(",", 1)[1]))
    assert uploaded_bytes <= 5_000_000
