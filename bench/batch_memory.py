"""Redis memory per stored batch item: what a batch of N items holds while it runs.

    .venv/bin/python -m bench.batch_memory [--sizes 10000 100000]

For each size, on a fresh embedded Redis: a CSV catalogue of N rows (`sku,image_url`) goes
through the intake an upload takes (service/batches/receiving.py: parsed as it streams, each row
rendered from the template `{"image": {"url": "{image_url}"}, "provider": "openai"}` with
`reference_column: sku`, checked, staged and committed), as an `image.analyze` batch. Then
`MEMORY USAGE <items> SAMPLES 0` (the items list exactly) and the `used_memory` delta of
`INFO memory` across the intake, each divided by N. Nothing runs: no worker is started.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis

from service.batches.intake import ItemMaker, spec_batch
from service.batches.receiving import stage_file
from service.cli.devstack import EmbeddedRedis, stack_environment
from service.config import Settings
from service.jobs.batch_store import BatchStore

SPEC = {
    "type": "image.analyze",
    "input": {"image": {"url": "{image_url}"}, "provider": "openai"},
    "reference_column": "sku",
}


async def catalogue(rows: int) -> AsyncIterator[bytes]:
    """`sku,image_url` rows, 64 KiB or so at a time, as an upload arrives."""
    yield b"sku,image_url\n"
    for start in range(0, rows, 500):
        lines = (
            f"SKU-{n:07d},https://cdn.shop.example.com/catalogue/2026/SKU-{n:07d}/main.jpg\n"
            for n in range(start, min(rows, start + 500))
        )
        yield "".join(lines).encode()


async def measure(redis_url: str, settings: Settings, rows: int) -> dict[str, float]:
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushall()
        store = BatchStore(redis, retention_s=3600)
        before = (await redis.info("memory"))["used_memory"]
        plan = spec_batch(SPEC, settings)
        started = time.perf_counter()
        batch_id = f"bat_bench{rows}"
        received = await stage_file(
            store, batch_id, ItemMaker(plan, "csv"), catalogue(rows), "csv", settings, "csv"
        )
        seconds = time.perf_counter() - started
        assert received.total == rows and received.refused == 0, received
        staged = store.key(batch_id, "staged")
        exact = await redis.memory_usage(staged, samples=0)
        after = (await redis.info("memory"))["used_memory"]
        sample = (await redis.lindex(staged, 0)).decode()
        return {
            "items": rows,
            "list_bytes_per_item": exact / rows,
            "used_memory_per_item": (after - before) / rows,
            "entry_bytes": len(sample),
            "items_per_s": rows / seconds,
        }
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    sizes = parser.parse_args().sizes
    with tempfile.TemporaryDirectory() as workdir:
        redis = EmbeddedRedis(Path(workdir) / "redis").start()
        try:
            env = stack_environment(redis.url, Path(workdir) / "files", "http://127.0.0.1:1")
            settings = Settings.from_env(env)
            print("items     list B/item  used_memory B/item  entry B  items/s")
            for rows in sizes:
                r = asyncio.run(measure(redis.url, settings, rows))
                print(
                    f"{rows:<9} {r['list_bytes_per_item']:>11.0f}  "
                    f"{r['used_memory_per_item']:>18.0f}  {r['entry_bytes']:>7}  "
                    f"{r['items_per_s']:>7.0f}"
                )
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
