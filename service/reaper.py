"""Handing back jobs whose worker is gone, so that a crash does not hold them for minutes.

arq claims a job with an `arq:in-progress:<id>` key that expires only after the job timeout plus
slack (340 s by default). A worker killed with SIGKILL, or one that exits because Redis went away,
leaves its claims behind, and its jobs wait all that time. So every jobs worker announces itself
with a short-lived presence key and records which jobs it runs; a claim whose worker's presence
has lapsed (or that no worker took up at all) is an orphan, and deleting it lets arq run the job
again at once. `runner.execute` continues a job left `running`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from service.keys import KEYS

log = logging.getLogger("pixhook.reaper")

PRESENCE_TTL_S = 10.0  # a worker silent this long is gone
HEARTBEAT_S = 2.0
# A claim with no runner recorded after this long was never taken up by a worker.
UNTAKEN_CLAIM_S = 10.0


def _presence_key(worker_id: str) -> str:
    return KEYS.worker(worker_id)


def _runner_key(job_id: str) -> str:
    return KEYS.job_runner(job_id)


class WorkerPresence:
    """This worker's heartbeat, and the record of which jobs it runs."""

    def __init__(self, redis: Redis, claim_ttl_s: float) -> None:
        self._redis = redis
        self._claim_ttl_s = claim_ttl_s
        self.worker_id = secrets.token_hex(8)

    async def beat(self) -> None:
        """Keep the presence key alive until cancelled; then remove it."""
        key = _presence_key(self.worker_id)
        try:
            while True:
                await self._redis.set(key, "1", px=int(PRESENCE_TTL_S * 1000))
                await asyncio.sleep(HEARTBEAT_S)
        finally:
            await asyncio.shield(self._redis.delete(key))

    async def running(self, job_id: str) -> None:
        await self._redis.set(_runner_key(job_id), self.worker_id, px=int(self._claim_ttl_s * 1000))


async def forget_worker(redis: Redis, worker_id: str) -> None:
    """Declare a worker gone now rather than when its presence lapses: this process ran it until
    Redis went away. The next reaping hands its jobs back."""
    await redis.delete(_presence_key(worker_id))


async def reap_orphans(redis: Redis, claim_ttl_s: float) -> list[str]:
    """Delete the claims of jobs whose worker is gone; the ids of the jobs handed back."""
    orphans = []
    async for raw in redis.scan_iter(match=f"{in_progress_key_prefix}job_*", count=500):
        key = raw.decode()
        job_id = key.removeprefix(in_progress_key_prefix)
        left_ms = await redis.pttl(key)
        if left_ms < 0:
            continue  # released meanwhile
        age_s = claim_ttl_s - left_ms / 1000
        runner = await redis.get(_runner_key(job_id))
        if runner is None:
            if age_s < UNTAKEN_CLAIM_S:
                continue  # claimed a moment ago, not yet started
        # A worker records itself within milliseconds of claiming: a claim younger than a
        # second may be a new worker's, still under the dead one's name.
        elif age_s < 1 or await redis.exists(_presence_key(runner.decode())):
            continue
        if await redis.delete(key):
            orphans.append(job_id)
    if orphans:
        log.warning("handed back %d jobs whose worker is gone: %s", len(orphans), orphans[:10])
    return orphans
