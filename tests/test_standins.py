"""The provider stand-ins speak what the official SDKs parse: each SDK (its retries off) against
its stand-in over real HTTP. If a provider changes its protocol, these fail with the new SDK."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from PIL import Image

from tests.support import anthropic_standin, openai_standin
from tests.support.anthropic_standin import AnthropicStandIn
from tests.support.openai_standin import OpenAIStandIn
from tests.support.standin_server import PRODUCT

T = TypeVar("T")
KEYS = ("sk-first", "sk-second")
CLAUDE = "claude-haiku-4-5"
GPT = "gpt-4o-mini"
TOOL = {
    "name": "record_answer",
    "description": "Record the product's attributes.",
    "input_schema": {"type": "object", "properties": {"category": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def claude_server() -> Iterator[AnthropicStandIn]:
    server = AnthropicStandIn(KEYS).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gpt_server() -> Iterator[OpenAIStandIn]:
    server = OpenAIStandIn(KEYS).start()
    yield server
    server.close()


@pytest.fixture
def claude(claude_server: AnthropicStandIn) -> AnthropicStandIn:
    claude_server.script([])
    claude_server.count_requests(60.0)
    return claude_server


@pytest.fixture
def gpt(gpt_server: OpenAIStandIn) -> OpenAIStandIn:
    gpt_server.script([])
    gpt_server.count_requests(60.0)
    return gpt_server


def with_claude(
    standin: AnthropicStandIn,
    call: Callable[[anthropic.AsyncAnthropic], Awaitable[T]],
    key: str = KEYS[0],
) -> T:
    async def main() -> T:
        client = anthropic.AsyncAnthropic(api_key=key, base_url=standin.base_url, max_retries=0)
        async with client:
            return await call(client)

    return asyncio.run(main())


def with_gpt(
    standin: OpenAIStandIn,
    call: Callable[[openai.AsyncOpenAI], Awaitable[T]],
    key: str = KEYS[0],
) -> T:
    async def main() -> T:
        client = openai.AsyncOpenAI(api_key=key, base_url=f"{standin.base_url}/v1", max_retries=0)
        async with client:
            return await call(client)

    return asyncio.run(main())


def png(size: tuple[int, int] = (300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def claude_photo_message(text: str = "Describe the product.") -> list[Any]:
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png()).decode()}
    content = [{"type": "text", "text": text}, {"type": "image", "source": image}]
    return [{"role": "user", "content": content}]


def chat(text: str = "Hello there.") -> list[Any]:
    return [{"role": "user", "content": text}]


def gpt_photo_message(text: str = "Describe the product.") -> list[Any]:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": content}]


# Anthropic.


def test_claude_reads_a_photo_and_reports_the_stand_ins_exact_usage(claude):
    message = with_claude(
        claude,
        lambda c: c.messages.create(model=CLAUDE, max_tokens=500, messages=claude_photo_message()),
    )

    block = message.content[0]
    assert block.type == "text" and json.loads(block.text) == PRODUCT
    expected = anthropic_standin.text_tokens("Describe the product.")
    expected += anthropic_standin.image_tokens(300, 200)
    assert (message.usage.input_tokens, message.model) == (expected, CLAUDE)
    assert message.usage.output_tokens == anthropic_standin.text_tokens(block.text)


def test_claude_streams_through_the_sdks_helpers(claude):
    claude.script([anthropic_standin.Answer(chunk_chars=9)])

    async def call(client: anthropic.AsyncAnthropic) -> tuple[list[str], Any]:
        stream = client.messages.stream(model=CLAUDE, max_tokens=500, messages=chat())
        async with stream as events:
            pieces = [text async for text in events.text_stream]
            return pieces, await events.get_final_message()

    pieces, final = with_claude(claude, call)

    assert "".join(pieces) == anthropic_standin.TEXT_REPLY and len(pieces) > 1
    reported = claude.requests[0]["usage"]
    assert final.usage.input_tokens == reported["input_tokens"]
    assert final.usage.output_tokens == reported["output_tokens"]
    assert final.stop_reason == "end_turn"


def test_claude_uses_the_forced_tool_plain_and_streamed(claude):
    async def call(client: anthropic.AsyncAnthropic) -> tuple[Any, Any]:
        options: dict[str, Any] = {
            "model": CLAUDE,
            "max_tokens": 500,
            "messages": claude_photo_message(),
            "tools": [TOOL],
            "tool_choice": {"type": "tool", "name": "record_answer"},
        }
        plain = await client.messages.create(**options)
        async with client.messages.stream(**options) as events:
            streamed = await events.get_final_message()
        return plain, streamed

    plain, streamed = with_claude(claude, call)

    for message in (plain, streamed):
        block = message.content[0]
        assert block.type == "tool_use" and block.name == "record_answer"
        assert block.input == PRODUCT and message.stop_reason == "tool_use"


def test_claude_refuses_a_revoked_key_with_an_authentication_error(claude):
    claude.revoke(KEYS[1])
    try:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            with_claude(claude, lambda c: c.models.list(), key=KEYS[1])
    finally:
        claude.add_key(KEYS[1])

    assert raised.value.status_code == 401
    assert raised.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_claude_beyond_the_limit_is_a_rate_limit_error_saying_when(claude):
    claude.count_requests(60.0, 1)

    async def call(client: anthropic.AsyncAnthropic) -> None:
        await client.messages.create(model=CLAUDE, max_tokens=50, messages=chat())
        await client.messages.create(model=CLAUDE, max_tokens=50, messages=chat())

    with pytest.raises(anthropic.RateLimitError) as raised:
        with_claude(claude, call)

    assert 50 <= int(raised.value.response.headers["retry-after"]) <= 60
    assert raised.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_claude_overloaded_is_the_sdks_529(claude):
    claude.script([anthropic_standin.Answer(529)])

    with pytest.raises(anthropic.APIStatusError) as raised:
        with_claude(
            claude, lambda c: c.messages.create(model=CLAUDE, max_tokens=50, messages=chat())
        )

    assert raised.value.status_code == 529
    assert isinstance(raised.value, anthropic.InternalServerError)


def test_claude_an_error_event_mid_stream_raises_in_the_sdk(claude):
    claude.script([anthropic_standin.Answer(chunk_chars=4, error_after=2)])

    async def call(client: anthropic.AsyncAnthropic) -> list[str]:
        stream = client.messages.stream(model=CLAUDE, max_tokens=50, messages=chat())
        async with stream as events:
            return [text async for text in events.text_stream]

    with pytest.raises(anthropic.APIStatusError) as raised:
        with_claude(claude, call)

    assert raised.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_claude_replies_carry_the_rate_limit_headers(claude):
    claude.count_requests(60.0, 10)

    response = with_claude(
        claude,
        lambda c: c.messages.with_raw_response.create(model=CLAUDE, max_tokens=50, messages=chat()),
    )

    headers = response.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "10"
    assert headers["anthropic-ratelimit-requests-remaining"] == "9"
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert headers[f"anthropic-ratelimit-{kind}-reset"].endswith("Z")


def test_claude_lists_the_models(claude):
    page = with_claude(claude, lambda c: c.models.list(limit=1))

    assert [model.id for model in page.data] == [anthropic_standin.MODELS[0]]
    assert page.has_more is True


# OpenAI.


def test_gpt_reads_a_photo_and_reports_the_stand_ins_exact_usage(gpt):
    completion = with_gpt(
        gpt, lambda c: c.chat.completions.create(model=GPT, messages=gpt_photo_message())
    )

    content = completion.choices[0].message.content
    assert content is not None and json.loads(content) == PRODUCT
    expected = openai_standin.text_tokens("Describe the product.")
    expected += openai_standin.image_tokens(300, 200)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected
    assert completion.usage.completion_tokens == openai_standin.text_tokens(content)


def test_gpt_streams_through_the_sdks_helpers(gpt):
    gpt.script([openai_standin.Answer(chunk_chars=9)])

    async def call(client: openai.AsyncOpenAI) -> tuple[list[str], Any]:
        messages: Any = [{"role": "user", "content": "Hello there."}]
        stream = client.chat.completions.stream(
            model=GPT, messages=messages, stream_options={"include_usage": True}
        )
        async with stream as events:
            pieces = [e.delta async for e in events if e.type == "content.delta"]
            return pieces, await events.get_final_completion()

    pieces, final = with_gpt(gpt, call)

    assert "".join(pieces) == openai_standin.TEXT_REPLY and len(pieces) > 1
    reported = gpt.requests[0]["usage"]
    assert final.usage.prompt_tokens == reported["prompt_tokens"]
    assert final.usage.completion_tokens == reported["completion_tokens"]
    assert final.usage.completion_tokens == openai_standin.text_tokens(openai_standin.TEXT_REPLY)


def test_gpt_accepts_a_json_schema_response_format(gpt):
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "product", "schema": TOOL["input_schema"], "strict": True},
    }

    completion = with_gpt(
        gpt,
        lambda c: c.chat.completions.create(
            model=GPT, messages=chat("A shoe."), response_format=response_format
        ),
    )

    assert json.loads(completion.choices[0].message.content or "") == PRODUCT


def test_gpt_errors_are_the_sdks_classes(gpt):
    gpt.revoke(KEYS[1])
    try:
        with pytest.raises(openai.AuthenticationError):
            with_gpt(gpt, lambda c: c.models.list(), key=KEYS[1])
    finally:
        gpt.add_key(KEYS[1])
    gpt.script([openai_standin.Answer(500)])
    with pytest.raises(openai.InternalServerError):
        with_gpt(gpt, lambda c: c.chat.completions.create(model=GPT, messages=gpt_photo_message()))


def test_gpt_beyond_the_limit_is_a_rate_limit_error_saying_when(gpt):
    gpt.count_requests(60.0, 1)

    async def call(client: openai.AsyncOpenAI) -> None:
        for _ in range(2):
            await client.chat.completions.create(model=GPT, messages=gpt_photo_message())

    with pytest.raises(openai.RateLimitError) as raised:
        with_gpt(gpt, call)

    headers = raised.value.response.headers
    assert 50 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_gpt_replies_carry_the_rate_limit_headers(gpt):
    gpt.count_requests(60.0, 10)

    response = with_gpt(
        gpt,
        lambda c: c.chat.completions.with_raw_response.create(
            model=GPT, messages=gpt_photo_message()
        ),
    )

    headers = response.headers
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == (
        "10",
        "9",
    )
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(headers["x-ratelimit-remaining-tokens"]) < int(headers["x-ratelimit-limit-tokens"])


def test_gpt_lists_the_models(gpt):
    page = with_gpt(gpt, lambda c: c.models.list())

    assert [model.id for model in page.data] == list(openai_standin.MODELS)


def test_gpt_edits_images_by_multipart(gpt):
    async def call(client: openai.AsyncOpenAI) -> Any:
        return await client.images.edit(
            image=[("photo.png", png(), "image/png"), ("logo.png", png((64, 64)), "image/png")],
            prompt="Put the logo on the shirt.",
            model="gpt-image-1",
            size="256x256",
            n=2,
        )

    edited = with_gpt(gpt, call)

    assert edited.data is not None and len(edited.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json or "")))
    assert image.size == (256, 256)
    sent = gpt.requests[0]["body"]
    assert (sent["prompt"], sent["model"], len(sent["images"])) == (
        "Put the logo on the shirt.",
        "gpt-image-1",
        2,
    )
    assert gpt.paid_calls_by_key(KEYS[0]) >= 1
