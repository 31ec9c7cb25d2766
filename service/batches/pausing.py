"""Resuming a paused batch: at the caller's word (`POST /v1/batches/{id}/resume`, perhaps with
a higher `max_cost`), or, for batches paused because every key of their provider was refused,
when the provider has a usable key again."""

from __future__ import annotations

import logging

from service.batches.engine import announce, fill
from service.errors import Conflict
from service.jobs.batch_store import Batch
from service.providers.key_checks import check_provider_keys
from service.runtime import Runtime

log = logging.getLogger("pixhook.batches")


async def resume(runtime: Runtime, batch: Batch, max_cost: float | None = None) -> None:
    """Run the paused batch again; `Conflict` when it is not paused, or its budget (the new one,
    if given) is still reached."""
    found = await runtime.batches.pauses.resume(batch.id, max_cost)
    if found == "not_paused":
        raise Conflict(
            f"the batch is {batch.status}, not paused", code="BATCH_NOT_PAUSED", field=None
        )
    if found == "budget_reached":
        spent = f"{batch.cost_usd:.6f}".rstrip("0").rstrip(".")
        raise Conflict(
            f"the batch has cost ${spent}, its budget is still reached: resume it with a "
            "higher max_cost",
            code="BUDGET_REACHED",
            field="max_cost",
        )
    await _resumed(runtime, batch)


async def resume_batches_paused_for_keys(runtime: Runtime, provider: str) -> list[str]:
    """Resume every batch paused because all of `provider`'s keys were refused: call when the
    provider has a usable key again. The ids of the batches resumed."""
    resumed = []
    for batch_id in await runtime.batches.running():
        batch = await runtime.batches.get(batch_id)
        if batch is None or batch.paused_reason != "keys" or batch.paused_provider != provider:
            continue
        if await runtime.batches.pauses.resume(batch.id, reason="keys") == "resumed":
            await _resumed(runtime, batch)
            resumed.append(batch.id)
    return resumed


async def _resumed(runtime: Runtime, paused: Batch) -> None:
    log.info("batch %s resumed (paused for %s)", paused.id, paused.paused_reason)
    current = await runtime.batches.get(paused.id)
    if current is not None:
        # One event per pause: named by the moment the batch paused.
        moment = f"resumed{round((paused.paused_at or 0) * 1000)}"
        await announce(runtime, current, "batch.resumed", moment)
    await fill(runtime, paused.id)


async def check_keys_and_resume(runtime: Runtime) -> None:
    """A jobs worker's start: every provider's keys checked, and batches paused because a
    provider had no key resumed if it has one now."""
    settings, redis, http = runtime.settings, runtime.redis, runtime.provider_http
    for provider in await check_provider_keys(settings, redis, http):
        resumed = await resume_batches_paused_for_keys(runtime, provider)
        if resumed:
            log.info("%s has a key in rotation again: resumed %s", provider, ", ".join(resumed))
