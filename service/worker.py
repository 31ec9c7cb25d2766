"""arq workers: `jobs` runs image jobs; `deliveries` sends webhooks. Separate processes and
queues, so slow image work never delays a delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from typing import Any, Literal

from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.cron import cron
from arq.worker import Worker, func
from redis.exceptions import RedisError

from service.batches.engine import follow_items, reconcile
from service.batches.items_url import (
    READ_BATCH_ITEMS,
    read_items,
    reconcile_receiving,
)
from service.batches.pausing import check_keys_and_resume
from service.config import Settings
from service.imaging.allocator import return_large_blocks
from service.keys import DELIVERY_QUEUE, JOB_QUEUE
from service.queue import RUN_JOB, deserialize, serialize
from service.reaper import WorkerPresence, forget_worker, reap_orphans
from service.runner import execute
from service.runtime import Runtime

log = logging.getLogger("pixhook.worker")
# How long a stopping worker waits for its start's provider key check to end.
_KEY_CHECK_GRACE_S = 5.0

QueueName = Literal["jobs", "deliveries"]
# Slack for arq's own timeout beyond ours, so our handler records the failure first.
_TIMEOUT_SLACK_S = 30
_FIRST_RECONNECT_DELAY_S = 1.0
_MAX_RECONNECT_DELAY_S = 30.0


async def _run_job(ctx: dict[str, Any], job_id: str, attempt: int | None = None) -> None:
    # arq's id, not the job's: a job's later attempts are arq jobs of their own (queue.arq_job_id).
    claimed = ctx.get("job_id", job_id)
    await ctx["presence"].running(claimed)
    try:
        await execute(ctx["runtime"], job_id, attempt)
    except asyncio.CancelledError:
        ctx["cut_short"].add(claimed)  # handed back at shutdown, see _jobs_worker
        raise


async def _read_batch_items(ctx: dict[str, Any], batch_id: str) -> None:
    await read_items(ctx["runtime"], batch_id)


async def _housekeeping(ctx: dict[str, Any]) -> None:
    await reap_orphans(ctx["runtime"].redis, ctx["claim_ttl_s"])
    await reconcile(ctx["runtime"])
    await reconcile_receiving(ctx["runtime"])


async def _trim_job_index(ctx: dict[str, Any]) -> None:
    """Job records expire on their own; their index entries are dropped here, once a minute."""
    runtime: Runtime = ctx["runtime"]
    clients = [client.id for client in await runtime.clients.list_clients()]
    await runtime.jobs.index.trim(time.time() - runtime.settings.jobs.retention_s, clients=clients)


async def _expire_dead_letters(ctx: dict[str, Any]) -> None:
    runtime: Runtime = ctx["runtime"]
    purged = await runtime.dead_letters.expire()
    await runtime.delivery_metrics.count_expired(len(purged))


def run_worker(settings: Settings, queue: QueueName) -> None:
    """Run until SIGTERM or SIGINT. When Redis goes away (a restart, a failover), start again once
    it is back instead of exiting: a worker that exits is restarted by Kubernetes with a growing
    back-off, and would stay down for minutes after a blip of seconds."""
    delay_s = _FIRST_RECONNECT_DELAY_S
    replacing: str | None = None
    while True:
        # A loop of its own per start, closed with what the worker left on it: arq gives up
        # shutting down when Redis is gone, and a heartbeat left beating on a shared loop kept
        # the lost worker "present", so its jobs waited out arq's claim (340 s).
        asyncio.set_event_loop(asyncio.new_event_loop())
        worker = create_worker(settings, queue, replacing=replacing)
        try:
            worker.run()
            return  # stopped by a signal
        except (RedisError, OSError) as exc:
            lost = exc
        if "runtime" in worker.ctx:  # it had started: a new outage, not the last one going on
            delay_s = _FIRST_RECONNECT_DELAY_S
        if "presence" in worker.ctx:
            replacing = worker.ctx["presence"].worker_id
        log.warning("lost Redis (%s); starting again in %.0f s", lost, delay_s)
        _abandon(worker)
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, _MAX_RECONNECT_DELAY_S)


def _abandon(worker: Worker) -> None:
    """Cancel what the worker left running (its heartbeat, jobs cut short, the dispatcher), close
    what it opened, and close its loop. Signal handlers go with the loop, so that a signal while
    waiting to start again stops the process."""
    loop = worker.loop
    # A cancelled arq job shields its last write to Redis in a task of its own: another round.
    for _ in range(3):
        leftovers = asyncio.all_tasks(loop)
        if not leftovers:
            break
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(_opened(worker.ctx).aclose())
    if "redis" in worker.ctx:  # arq's own pool: its close failed on Redis before reaching it
        loop.run_until_complete(worker.ctx["redis"].aclose())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _opened(ctx: dict[str, Any]) -> AsyncExitStack:
    """What a worker opened (connections, sessions), closed once however the worker ends."""
    opened: AsyncExitStack = ctx.setdefault("opened", AsyncExitStack())
    return opened


def create_worker(
    settings: Settings, queue: QueueName, *, replacing: str | None = None, **overrides: Any
) -> Worker:
    """An arq worker for one queue; `overrides` are passed to arq. `replacing` is the id of this
    process's jobs worker that Redis took away: its jobs are handed back as this one starts."""
    common: dict[str, Any] = {
        "redis_settings": RedisSettings.from_dsn(settings.redis.url),
        "keep_result": 0,
        # arq starts jobs only on a poll tick: a job of ~120 ms with ticks of 100 ms waited for a
        # second tick, halving a single worker's throughput (bench/transform.py). A tick is one
        # cheap ZRANGEBYSCORE.
        "poll_delay": 0.02,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }
    if queue == "jobs":
        return _jobs_worker(settings, common | overrides, replacing)
    return _deliveries_worker(settings, common | overrides)


async def _finish_or_cancel(task: asyncio.Task[Any], grace_s: float) -> None:
    # A Redis pipeline cancelled mid-execute keeps its connection: let the task end by itself.
    try:
        await asyncio.wait_for(asyncio.shield(task), grace_s)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    except Exception:
        log.exception("the provider key check failed")


def _jobs_worker(settings: Settings, options: dict[str, Any], replacing: str | None) -> Worker:
    timeout = settings.jobs.timeout_s + _TIMEOUT_SLACK_S
    claim_ttl_s = timeout + 10  # arq's in-progress claim: the longest timeout plus 10 s

    async def startup(ctx: dict[str, Any]) -> None:
        # Decoded pixels go back to the system once a job is done with them, not to the heap.
        if not return_large_blocks():
            log.info("not glibc: large decodes may stay in this worker's RSS after they end")
        runtime = await Runtime.open(settings)
        _opened(ctx).push_async_callback(runtime.close)
        follow_items(runtime)
        if replacing is not None:
            # Gone for good: the reaper, first run at startup, hands its jobs back at once.
            await forget_worker(runtime.redis, replacing)
        presence = WorkerPresence(runtime.redis, claim_ttl_s)
        ctx.update(runtime=runtime, presence=presence, claim_ttl_s=claim_ttl_s, cut_short=set())
        ctx["heartbeat"] = asyncio.create_task(presence.beat())
        # In the background: a provider slow to answer must not hold the worker's start.
        ctx["key_check"] = asyncio.create_task(check_keys_and_resume(runtime))

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "runtime" not in ctx:
            return
        if ctx["cut_short"]:
            # arq means to release the claims of the jobs it cancels, but closes its pool while
            # doing so: a claim left behind holds the job for job_timeout + 40 s. Released here,
            # another worker runs them at once (runner.execute resumes a job left `running`).
            claims = [in_progress_key_prefix + job_id for job_id in ctx["cut_short"]]
            await ctx["runtime"].redis.delete(*claims)
            log.info("handed back %d jobs cut short by the shutdown", len(claims))
        ctx["heartbeat"].cancel()
        await _finish_or_cancel(ctx["key_check"], _KEY_CHECK_GRACE_S)
        await asyncio.gather(ctx["heartbeat"], return_exceptions=True)
        await _opened(ctx).aclose()

    return Worker(
        [
            func(_run_job, name=RUN_JOB, timeout=timeout),
            # The jobs' timeout: arq sizes every claim by its longest function's, and the reaper
            # reads a claim's age from that size.
            func(_read_batch_items, name=READ_BATCH_ITEMS, timeout=timeout, max_tries=1),
        ],
        # Every few seconds, without anyone asking: jobs of dead workers are handed back, and
        # batches resume after a crash or a restart.
        cron_jobs=[
            cron(_housekeeping, second=set(range(0, 60, 5)), run_at_startup=True),
            cron(_trim_job_index, second=30),
        ],
        queue_name=JOB_QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=settings.jobs.concurrency,
        job_timeout=timeout,
        # On SIGTERM, stop taking jobs and let running ones finish within the grace period;
        # whatever is still running then is cancelled and handed back.
        job_completion_wait=max(1, round(settings.deliveries.shutdown_grace_s)),
        **options,
    )


def _deliveries_worker(settings: Settings, options: dict[str, Any]) -> Worker:
    """Deliveries are claimed in batches by the delivery engine this worker runs (see
    docs/delivery-engine.md); arq runs its housekeeping and its signals and health checks."""

    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.open(settings)
        _opened(ctx).push_async_callback(runtime.close)
        ctx.update(runtime=runtime)
        ctx["dispatching"] = asyncio.create_task(runtime.engine.run())

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "dispatching" in ctx:
            await ctx["runtime"].engine.stop(settings.deliveries.shutdown_grace_s)
            await ctx["dispatching"]
        await _opened(ctx).aclose()

    return Worker(
        cron_jobs=[cron(_expire_dead_letters, second=0, run_at_startup=True)],
        queue_name=DELIVERY_QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        job_timeout=300,
        **options,
    )
