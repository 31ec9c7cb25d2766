"""Provider calls from a process of its own, made as a `jobs` worker makes them.

    python -m tests.support.rate_window CALLS CONCURRENCY

Settings come from `PIXHOOK_*`, as a worker's do. It prints `ready`, waits for a line on stdin
(so that every process starts at once), makes CALLS vision chat completions through
`ProviderCalls`, CONCURRENCY at a time, and prints one JSON line:
`{"succeeded": n, "failed": {code: n}, "attempts": n, "started_at": t, "finished_at": t}`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from PIL import Image
from redis.asyncio import Redis

from service.config import Settings
from service.providers import vision
from service.providers.calls import ProviderCalls
from service.providers.errors import ProviderError
from service.providers.openai import provider_http
from service.tasks.analyze import AnalyzeInput, parse_input


async def call_provider(settings: Settings, calls: int, concurrency: int) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, "JPEG")
    model = settings.providers.openai_vision_model
    params = parse_input(AnalyzeInput(provider="openai"), settings)
    request = vision.analysis_request(buffer.getvalue(), params)
    remaining = iter(range(calls))
    failed: Counter[str] = Counter()
    succeeded = attempts = 0
    redis = Redis.from_url(settings.redis.url)
    started_at = time.time()

    async def caller() -> None:
        nonlocal succeeded, attempts
        for _ in remaining:
            try:
                reply = await providers.chat("openai", [model], request)
            except ProviderError as exc:
                failed[exc.code] += 1
            else:
                succeeded, attempts = succeeded + 1, attempts + reply.attempts

    async with provider_http() as http:
        providers = ProviderCalls(settings, redis, http)
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    await redis.aclose()
    report = {"succeeded": succeeded, "failed": dict(failed), "attempts": attempts}
    return report | {"started_at": started_at, "finished_at": time.time()}


def main() -> None:
    calls, concurrency = (int(arg) for arg in sys.argv[1:3])
    settings = Settings.from_env(os.environ)
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(call_provider(settings, calls, concurrency))), flush=True)


if __name__ == "__main__":
    main()
