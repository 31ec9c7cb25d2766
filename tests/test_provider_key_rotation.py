"""Calls spread over a provider's keys, and a key the provider refuses is asked once: calls that
were waiting for their turn when it left the rotation do not send to it after all."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from redis.asyncio import Redis

from service.cli.devstack import EmbeddedRedis
from service.config import ProviderSettings, Settings
from service.providers import vision
from service.providers.calls import ProviderCalls
from service.providers.openai import provider_http
from service.tasks.analyze import AnalyzeInput, parse_input
from tests.support.openai_standin import OpenAIStandIn

KEYS = ("sk-rotation-k001", "sk-rotation-k002")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path).start()
    yield server.url
    server.stop()


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    server = OpenAIStandIn(KEYS).start()
    yield server
    server.close()


def make_calls(redis_url: str, standin: OpenAIStandIn, calls: int) -> None:
    """`calls` vision calls at once, each key allowing pixhook 4 a second: most of them wait for
    their turn, holding the keys that were in rotation when they started."""
    settings = Settings(
        providers=ProviderSettings(
            openai_base_url=standin.base_url,
            openai_api_keys=KEYS,
            requests_per_minute=240,
            burst=1,
            concurrency=calls,
        )
    )
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, "JPEG")
    params = parse_input(AnalyzeInput(provider="openai"), settings)
    request = vision.analysis_request(buffer.getvalue(), params)
    model = settings.providers.openai_vision_model

    async def run() -> None:
        redis = Redis.from_url(redis_url)
        async with provider_http() as http:
            providers = ProviderCalls(settings, redis, http)
            replies = (providers.chat("openai", [model], request) for _ in range(calls))
            await asyncio.gather(*replies)
        await redis.aclose()

    asyncio.run(run())


def test_a_revoked_key_is_asked_once_though_calls_were_waiting_to_use_it(
    redis_url: str, standin: OpenAIStandIn
) -> None:
    standin.revoke(KEYS[1])
    make_calls(redis_url, standin, 8)
    asked = [r["key"] for r in standin.requests]
    assert asked.count(KEYS[1]) == 1
    assert standin.paid_calls_by_key(KEYS[0]) == 8
