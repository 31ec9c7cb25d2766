"""What keeping every item's outcome costs in Redis, and what paging it takes.

    .venv/bin/python -m bench.batch_outcomes [--items 100000] [--failed-share 0.2]

Records the end of every item of one batch through `BatchStore.record` (the script the workers
run), a share of them failed with a typical message, on an embedded Redis; then prints the bytes
of each outcome key (`MEMORY USAGE`), the bytes per failed item, and the time to page every
failed item (`indexes` by 500, as `GET /v1/batches/{id}/items?status=failed` does) and to read
the first 100 failures (what every `GET /v1/batches/{id}` and batch event shows).
docs/operations.md quotes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from service.cli.devstack import EmbeddedRedis
from service.jobs.batch_store import Batch, BatchStore, Outcome

MESSAGE = "fetching the image answered 503 (3 attempts)"
PARTS = ("done", "failed", "canceled", "errors", "codes", "latency")


async def measure(redis_url: str, items: int, failed_share: float) -> None:
    redis = Redis.from_url(redis_url)
    store = BatchStore(redis, retention_s=3600)
    batch = Batch(
        id="bat_bench",
        client_id="bench",
        type="image.transform",
        status="running",
        created_at=time.time(),
        total=items,
        concurrency=16,
        results_key="bench/results.jsonl",
        upload_id="bench",
        webhook_url=None,
        webhook_events=("completed",),
        item_webhooks=False,
        metadata={},
    )
    entries = [f"{i}:{{}}" for i in range(items)]
    for start in range(0, items, 1000):
        await store.stage(batch.id, entries[start : start + 1000], [])
    if not await store.commit(batch):
        raise SystemExit("the staged items did not become the batch")
    # Result lines go to storage in parts as they come; only the outcomes stay, so leave them out.
    await redis.hset(store.key(batch.id), "rewrite", "1")
    rng = random.Random(1)
    failed = 0
    for index in range(items):
        fails = rng.random() < failed_share
        failed += fails
        error = {"code": "IMAGE_FETCH_FAILED", "message": MESSAGE} if fails else None
        outcome: Outcome = "failed" if fails else "succeeded"
        latency_s = rng.lognormvariate(-1.0, 0.8)
        await store.record(
            batch.id, index, outcome, "", error, 0.0, 1e9, items, latency_s=latency_s
        )
    sizes = {part: await redis.memory_usage(store.key(batch.id, part)) or 0 for part in PARTS}
    print(f"{items} items, {failed} failed")
    for part, size in sizes.items():
        print(f"  {part:9} {size:>12,} bytes")
    print(f"  per failed item: {sizes['errors'] / max(1, failed):.0f} bytes")
    started, paged, after = time.perf_counter(), 0, -1
    while page := await store.outcomes.indexes(batch.id, "failed", after, 500, items):
        paged, after = paged + len(page), page[-1]
    print(f"  paging every failed item by 500: {time.perf_counter() - started:.2f} s ({paged})")
    started = time.perf_counter()
    await store.outcomes.failures(batch.id, items)
    print(f"  the first 100 failures: {(time.perf_counter() - started) * 1000:.1f} ms")
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--failed-share", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = EmbeddedRedis(Path(workdir)).start()
        try:
            asyncio.run(measure(server.url, args.items, args.failed_share))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
