"""arq workers: `jobs` runs image jobs, `deliveries` sends webhooks. Separate queues, so slow
image work never starves deliveries."""

from __future__ import annotations

from typing import Any, Literal

from arq.connections import RedisSettings
from arq.worker import Worker, func

from service.config import Settings
from service.queue import JOB_QUEUE, RUN_JOB
from service.runner import execute
from service.runtime import Runtime
from webhooks.deliverer import Deliverer, http_client
from webhooks.queue import ATTEMPT_FUNCTION, DELIVERY_QUEUE, deserialize, serialize

QueueName = Literal["jobs", "deliveries"]
# Slack for arq's own timeout beyond ours, so our handler records the failure first.
_TIMEOUT_SLACK_S = 30


async def _run_job(ctx: dict[str, Any], job_id: str) -> None:
    await execute(ctx["runtime"], job_id)


async def _deliver_attempt(ctx: dict[str, Any], delivery_id: str, attempt: int) -> None:
    await ctx["deliverer"].attempt(delivery_id, attempt)


def create_worker(settings: Settings, queue: QueueName, **overrides: Any) -> Worker:
    """An arq worker for one queue; `overrides` are passed to arq (tests use `burst`)."""

    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.open(settings)
        ctx["runtime"] = runtime
        if queue == "deliveries":
            ctx["http"] = http_client(settings.delivery_policy)
            ctx["deliverer"] = Deliverer(
                runtime.deliveries,
                runtime.redis,
                ctx["http"],
                runtime.clients.signing_secrets,
                settings.delivery_policy,
            )

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "http" in ctx:
            await ctx["http"].aclose()
        if "runtime" in ctx:
            await ctx["runtime"].close()

    if queue == "jobs":
        timeout = settings.job_timeout_s + _TIMEOUT_SLACK_S
        functions = [func(_run_job, name=RUN_JOB, timeout=timeout)]
        queue_name, max_jobs = JOB_QUEUE, settings.job_concurrency
    else:
        timeout = settings.webhook_attempt_timeout_s + _TIMEOUT_SLACK_S
        functions = [func(_deliver_attempt, name=ATTEMPT_FUNCTION, timeout=timeout)]
        queue_name, max_jobs = DELIVERY_QUEUE, settings.delivery_concurrency
    options: dict[str, Any] = {
        "queue_name": queue_name,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": max_jobs,
        "job_timeout": timeout,
        "keep_result": 0,
        "poll_delay": 0.1,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        **overrides,
    }
    return Worker(functions, **options)
