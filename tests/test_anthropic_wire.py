"""AnthropicWire against the Anthropic stand-in over real HTTP: one request per call, its body,
plain and streamed replies, usage, rate-limit hints and every failure's code."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from service.providers.anthropic import AnthropicWire, limit_hints
from service.providers.chat import ChatRequest, ImagePart, Message, TextPart, TokenUsage
from service.providers.errors import (
    PROVIDER_AUTH,
    PROVIDER_BAD_RESPONSE,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    ProviderError,
)
from service.providers.wire import Endpoint, WireReply
from tests.support.anthropic_standin import (
    PRODUCT,
    TEXT_REPLY,
    Answer,
    AnthropicStandIn,
    image_tokens,
    text_tokens,
)

KEYS = ("sk-ant-one", "sk-ant-two", "sk-ant-three")
MODEL = "claude-haiku-4-5"
SCHEMA = {"type": "object", "properties": {"category": {"type": "string"}}}


@pytest.fixture(scope="module")
def standin() -> Iterator[AnthropicStandIn]:
    server = AnthropicStandIn(KEYS).start()
    yield server
    server.close()


@pytest.fixture
def anthropic(standin: AnthropicStandIn) -> AnthropicStandIn:
    standin.script([])
    standin.count_requests(60.0)
    return standin


def photo(size: tuple[int, int] = (300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def ask(text: str = "Describe the product.", **options: Any) -> ChatRequest:
    parts = (TextPart(text), ImagePart(photo(), "image/jpeg"))
    return ChatRequest((Message("user", parts),), **options)


def chat(text: str) -> ChatRequest:
    return ChatRequest((Message("user", (TextPart(text),)),))


def send(
    standin: AnthropicStandIn,
    request: ChatRequest,
    *,
    stream: bool = False,
    key: str = KEYS[0],
    timeout_s: float = 5.0,
) -> tuple[WireReply, list[str]]:
    pieces: list[str] = []

    async def forward(text: str) -> None:
        pieces.append(text)

    async def main() -> WireReply:
        async with httpx.AsyncClient() as http:
            endpoint = Endpoint(standin.base_url, key, timeout_s)
            return await AnthropicWire().send(
                http, endpoint, MODEL, request, forward if stream else None
            )

    return asyncio.run(main()), pieces


def failure(standin: AnthropicStandIn, request: ChatRequest, **options: Any) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        send(standin, request, **options)
    return raised.value


def check_key(standin: AnthropicStandIn, key: str) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            await AnthropicWire().check_key(http, Endpoint(standin.base_url, key, 5.0))

    asyncio.run(main())


def test_the_request_carries_the_key_the_version_an_image_block_and_the_system(anthropic):
    send(anthropic, ask(system="You describe products.", temperature=0.2, max_tokens=300))

    sent = anthropic.requests[0]
    body = sent["body"]
    assert sent["key"] == KEYS[0]
    assert (body["model"], body["max_tokens"], body["temperature"]) == (MODEL, 300, 0.2)
    assert body["system"] == "You describe products."
    text, image = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "Describe the product."}
    assert image["source"]["type"] == "base64"
    assert image["source"]["media_type"] == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(image["source"]["data"]))).size == (300, 200)
    assert "stream" not in body and "tools" not in body


def test_a_schema_is_asked_for_with_a_forced_tool_and_comes_back_as_json_text(anthropic):
    reply, _ = send(anthropic, ask(json_schema=SCHEMA))

    body = anthropic.requests[0]["body"]
    assert body["tools"][0]["name"] == "record_answer"
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "record_answer"}
    assert json.loads(reply.text) == PRODUCT


def test_a_json_reply_without_a_schema_is_asked_for_in_the_system_prompt(anthropic):
    send(anthropic, ask(system="You describe products.", json_reply=True))

    body = anthropic.requests[0]["body"]
    assert body["system"].startswith("You describe products.")
    assert "one JSON object" in body["system"]
    assert "tools" not in body


def test_a_plain_reply_has_the_text_the_model_and_the_exact_usage(anthropic):
    reply, _ = send(anthropic, ask("Describe the product."))

    assert json.loads(reply.text) == PRODUCT
    assert reply.model == MODEL
    expected_input = text_tokens("Describe the product.") + image_tokens(300, 200)
    assert reply.usage == TokenUsage(expected_input, text_tokens(reply.text), 0)
    assert reply.chunks == 0


def test_a_streamed_reply_forwards_each_piece_and_counts_them(anthropic):
    anthropic.script([Answer(chunk_chars=10)])

    reply, pieces = send(anthropic, chat("Hello there."), stream=True)

    assert reply.text == "".join(pieces) == TEXT_REPLY
    assert reply.chunks == len(pieces) == -(-len(TEXT_REPLY) // 10)
    assert reply.usage == TokenUsage(text_tokens("Hello there."), text_tokens(TEXT_REPLY), 0)
    assert (reply.model, anthropic.requests[0]["body"]["stream"]) == (MODEL, True)


def test_a_streamed_tool_answer_forwards_its_json_pieces(anthropic):
    anthropic.script([Answer(chunk_chars=20)])

    reply, pieces = send(anthropic, ask(json_schema=SCHEMA), stream=True)

    assert json.loads("".join(pieces)) == json.loads(reply.text) == PRODUCT
    assert len(pieces) > 1


def test_cache_reads_are_cached_input_and_cache_writes_are_input(anthropic):
    anthropic.script([Answer(cache_read_tokens=7, cache_write_tokens=5)])

    text = "A long instruction that the provider keeps in its prompt cache. " * 4

    reply, _ = send(anthropic, chat(text), stream=True)

    reported = anthropic.requests[0]["usage"]
    assert reply.usage.cached_input_tokens == reported["cache_read_input_tokens"] == 7
    assert reply.usage.input_tokens == reported["input_tokens"] + 5
    assert reply.usage.input_tokens + reply.usage.cached_input_tokens == text_tokens(text)


@pytest.mark.parametrize(
    ("answer", "code", "retryable", "status"),
    [
        (Answer(400), PROVIDER_REJECTED, False, 400),
        (Answer(401), PROVIDER_AUTH, False, 401),
        (Answer(403), PROVIDER_AUTH, False, 403),
        (Answer(404), PROVIDER_REJECTED, False, 404),
        (Answer(500), PROVIDER_UNAVAILABLE, True, 500),
        (Answer(529), PROVIDER_UNAVAILABLE, True, 529),
        (Answer(429, {"retry-after": "7"}), PROVIDER_UNAVAILABLE, True, 429),
    ],
    ids=["400", "401", "403", "404", "500", "529", "429"],
)
def test_each_status_fails_with_its_code(anthropic, answer, code, retryable, status):
    anthropic.script([answer])

    error = failure(anthropic, chat("Hi"))

    assert (error.code, error.retryable, error.status) == (code, retryable, status)
    assert error.hints is not None and error.hints.requests_remaining is not None
    assert error.retry_after_s == (7.0 if status == 429 else None)


def test_an_unknown_model_is_rejected_with_the_providers_message(anthropic):
    anthropic.retire(MODEL)
    try:
        error = failure(anthropic, chat("Hi"))
    finally:
        anthropic.restore_model(MODEL)

    assert (error.code, error.retryable, error.status) == (PROVIDER_REJECTED, False, 404)
    assert f"model: {MODEL}" in str(error)


def test_a_revoked_key_fails_as_auth_and_the_others_still_answer(anthropic):
    anthropic.revoke(KEYS[2])
    try:
        error = failure(anthropic, chat("Hi"), key=KEYS[2])
        reply, _ = send(anthropic, chat("Hi"), key=KEYS[1])
    finally:
        anthropic.add_key(KEYS[2])

    assert (error.code, error.retryable, error.status) == (PROVIDER_AUTH, False, 401)
    assert reply.text == TEXT_REPLY
    assert [r["key"] for r in anthropic.requests] == [KEYS[2], KEYS[1]]


def test_the_rate_limit_headers_become_hints(anthropic):
    anthropic.count_requests(60.0, 5)

    first, _ = send(anthropic, chat("Hi"))
    second, _ = send(anthropic, chat("Hi"))

    assert (first.hints.requests_remaining, second.hints.requests_remaining) == (4, 3)
    assert second.hints.requests_reset_s is not None and 50 < second.hints.requests_reset_s <= 60
    assert second.hints.tokens_remaining is not None and second.hints.tokens_reset_s is not None


def test_beyond_the_limit_the_429_says_when_to_retry(anthropic):
    anthropic.count_requests(60.0, 1)
    send(anthropic, chat("Hi"))

    error = failure(anthropic, chat("Hi"))

    assert (error.code, error.retryable, error.status) == (PROVIDER_UNAVAILABLE, True, 429)
    assert error.retry_after_s is not None and 50 <= error.retry_after_s <= 60
    assert error.hints is not None and error.hints.requests_remaining == 0


def test_each_key_has_its_own_window(anthropic):
    anthropic.count_requests(60.0, 1)
    send(anthropic, chat("Hi"), key=KEYS[0])

    reply, _ = send(anthropic, chat("Hi"), key=KEYS[1])

    assert reply.hints.requests_remaining == 0
    assert anthropic.paid_calls_by_key(KEYS[1]) >= 1


def test_the_input_token_limit_is_the_hint_a_call_is_held_against():
    # Output tokens count as they are written: an estimate held against their far smaller limit
    # let two or three calls through where twenty fit (bench/provider_batch.py).
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-input-tokens-remaining": "900",
            "anthropic-ratelimit-input-tokens-reset": "2000-01-01T00:00:00Z",
            "anthropic-ratelimit-output-tokens-remaining": "40",
            "anthropic-ratelimit-output-tokens-reset": "2099-01-01T00:00:00Z",
            "anthropic-ratelimit-tokens-remaining": "940",
            "anthropic-ratelimit-requests-limit": "50",
        }
    )

    hints = limit_hints(headers)

    assert (hints.tokens_remaining, hints.tokens_reset_s) == (900, 0.0)
    assert (hints.requests_remaining, hints.requests_reset_s) == (None, None)
    assert hints.requests_limit == 50


@pytest.mark.parametrize(
    "broken",
    [Answer(cut_after=2), Answer(malformed=True)],
    ids=["cut", "garbled"],
)
def test_a_broken_stream_is_a_retryable_bad_response(anthropic, broken):
    anthropic.script([broken])

    error = failure(anthropic, chat("Hi"), stream=True)

    assert (error.code, error.retryable) == (PROVIDER_BAD_RESPONSE, True)
    assert error.hints is not None and error.hints.requests_remaining is not None


@pytest.mark.parametrize(
    ("event", "code", "retryable", "status"),
    [
        ("overloaded_error", PROVIDER_UNAVAILABLE, True, 529),
        ("api_error", PROVIDER_UNAVAILABLE, True, 500),
        ("invalid_request_error", PROVIDER_REJECTED, False, 400),
    ],
)
def test_an_error_event_mid_stream_fails_as_its_type_says(
    anthropic, event, code, retryable, status
):
    anthropic.script([Answer(error_after=2, error_event=event)])

    error = failure(anthropic, chat("Hi"), stream=True)

    assert (error.code, error.retryable, error.status) == (code, retryable, status)


def test_malformed_json_is_a_retryable_bad_response(anthropic):
    anthropic.script([Answer(malformed=True)])

    error = failure(anthropic, chat("Hi"))

    assert (error.code, error.retryable) == (PROVIDER_BAD_RESPONSE, True)


def test_one_deadline_bounds_a_stream_that_trickles(anthropic):
    anthropic.script([Answer(chunk_chars=4, chunk_delay_s=0.3)])

    error = failure(anthropic, chat("Hi"), stream=True, timeout_s=1.0)

    assert (error.code, error.retryable) == (PROVIDER_UNAVAILABLE, True)
    assert "in time" in str(error)


def test_a_slow_answer_times_out(anthropic):
    anthropic.script([Answer(delay_s=2)])

    error = failure(anthropic, chat("Hi"), timeout_s=0.5)

    assert (error.code, error.retryable) == (PROVIDER_UNAVAILABLE, True)


def test_check_key_passes_a_valid_key_and_refuses_a_revoked_one(anthropic):
    check_key(anthropic, KEYS[0])
    anthropic.revoke(KEYS[2])
    try:
        with pytest.raises(ProviderError) as raised:
            check_key(anthropic, KEYS[2])
    finally:
        anthropic.add_key(KEYS[2])

    assert (raised.value.code, raised.value.status) == (PROVIDER_AUTH, 401)
    assert anthropic.paid_calls_by_key(KEYS[2]) == 0


def test_a_forbidden_key_fails_as_auth_with_403(anthropic):
    anthropic.forbid(KEYS[2])
    try:
        error = failure(anthropic, chat("Hi"), key=KEYS[2])
    finally:
        anthropic.add_key(KEYS[2])

    assert (error.code, error.retryable, error.status) == (PROVIDER_AUTH, False, 403)
