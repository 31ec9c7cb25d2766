"""arq workers: `jobs` runs image jobs; `deliveries` sends webhooks. Separate processes and
queues, so slow image work never delays a delivery."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from service.batches.engine import reconcile
from service.config import Settings
from service.queue import DELIVERY_QUEUE, JOB_QUEUE, RUN_JOB, deserialize, serialize
from service.runner import execute
from service.runtime import Runtime
from webhooks.connector import open_session
from webhooks.dispatcher import Dispatcher

log = logging.getLogger("pixhook.worker")

QueueName = Literal["jobs", "deliveries"]
# Slack for arq's own timeout beyond ours, so our handler records the failure first.
_TIMEOUT_SLACK_S = 30


async def _run_job(ctx: dict[str, Any], job_id: str) -> None:
    await execute(ctx["runtime"], job_id)


async def _reconcile_batches(ctx: dict[str, Any]) -> None:
    await reconcile(ctx["runtime"])


async def _expire_dead_letters(ctx: dict[str, Any]) -> None:
    runtime: Runtime = ctx["runtime"]
    purged = await runtime.dead_letters.expire()
    await runtime.delivery_metrics.count_expired(len(purged))


def create_worker(settings: Settings, queue: QueueName, **overrides: Any) -> Worker:
    """An arq worker for one queue; `overrides` are passed to arq."""
    common: dict[str, Any] = {
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "keep_result": 0,
        # arq starts jobs only on a poll tick: a job of ~120 ms with ticks of 100 ms waited for a
        # second tick, halving a single worker's throughput (bench/transform.py). A tick is one
        # cheap ZRANGEBYSCORE.
        "poll_delay": 0.02,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }
    if queue == "jobs":
        return _jobs_worker(settings, common | overrides)
    return _deliveries_worker(settings, common | overrides)


def _jobs_worker(settings: Settings, options: dict[str, Any]) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["runtime"] = await Runtime.open(settings)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "runtime" in ctx:
            await ctx["runtime"].close()

    timeout = settings.job_timeout_s + _TIMEOUT_SLACK_S
    return Worker(
        [func(_run_job, name=RUN_JOB, timeout=timeout)],
        # Every few seconds: batches resume after a crash or a restart without anyone asking.
        cron_jobs=[cron(_reconcile_batches, second=set(range(0, 60, 5)), run_at_startup=True)],
        queue_name=JOB_QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=settings.job_concurrency,
        job_timeout=timeout,
        **options,
    )


def _deliveries_worker(settings: Settings, options: dict[str, Any]) -> Worker:
    """Deliveries are claimed in batches by the dispatcher this worker runs (see
    docs/delivery-engine.md); arq runs its housekeeping and its signals and health checks."""

    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.open(settings)
        session = open_session(
            settings.allow_private_networks,
            connect_timeout_s=settings.webhook_connect_timeout_s,
            max_connections=settings.delivery_concurrency,
            per_host=settings.webhook_per_host_concurrency,
        )
        dispatcher = Dispatcher(
            runtime.deliveries,
            session,
            runtime.clients.signing_secrets,
            settings.delivery_policy,
            settings.allow_private_networks,
            runtime.circuits,
            runtime.dead_letters,
            runtime.delivery_metrics,
        )
        ctx.update(runtime=runtime, session=session, dispatcher=dispatcher)
        ctx["dispatching"] = asyncio.create_task(dispatcher.run())

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "dispatcher" in ctx:
            await ctx["dispatcher"].stop(settings.shutdown_grace_s)
            await ctx["dispatching"]
            await ctx["session"].close()
        if "runtime" in ctx:
            await ctx["runtime"].close()

    return Worker(
        cron_jobs=[cron(_expire_dead_letters, second=0, run_at_startup=True)],
        queue_name=DELIVERY_QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        job_timeout=300,
        **options,
    )
