"""Provider keys checked when a batch starts: a revoked key leaves the rotation before an item
pays for finding out."""

from __future__ import annotations

import asyncio
import json
import logging

from service.jobs.batch_store import RETRY
from service.providers.calls import ProviderCalls
from service.providers.errors import ProviderError
from service.providers.key_checks import configured_providers
from service.runtime import Runtime

log = logging.getLogger("pixhook.batches")

# A check that waits longer on an unreachable provider only delays the batch's first items.
_CHECK_S = 3.0


async def check_keys_before_start(runtime: Runtime, bodies: list[str]) -> None:
    """Each provider the batch's first items (`bodies`) call gets its keys tried."""
    providers = {_provider(body) for body in bodies if body != RETRY}
    calls = ProviderCalls(runtime.settings, runtime.redis, runtime.provider_http)
    for name in sorted(p for p in providers if p in configured_providers(runtime.settings)):
        try:
            async with asyncio.timeout(_CHECK_S):
                await calls.check_keys(name)
        except (ProviderError, TimeoutError) as exc:
            # No key left: the first item pauses the batch. Unreachable: its items will retry.
            log.warning("%s keys could not be checked before a batch: %r", name, exc)


def _provider(body: str) -> str | None:
    item = json.loads(body)
    params = item.get("input") if isinstance(item.get("input"), dict) else {}
    # The defaults of the job types: OpenAI's images API, Claude for text.
    default = {"image.generate": "openai", "text.generate": "anthropic"}.get(item.get("type"))
    return params.get("provider") or default
