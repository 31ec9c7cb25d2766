"""Webhook delivery throughput and latency: pixhook's deliveries worker against plain arq + httpx.

    .venv/bin/python -m bench.deliveries [--events 5000] [--rate 200] [--seconds 10]

Each side gets its own throwaway Redis, and all N events are enqueued before its worker starts.
The receiver is nginx answering 200 and logging `webhook-id $msec` per request: that log is the
arrival clock for both sides. bench/README.md defines each printed figure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.asyncio import Redis

from bench.errors import BenchError
from bench.figures import percentile
from bench.nginx_receiver import Arrivals, Nginx, tail
from bench.processes import cpu_seconds, redis_process
from service.cli.devstack import EmbeddedRedis, ServiceProcesses, StackError, stop_process
from service.clients.store import ClientStore
from service.config import Settings
from service.runtime import engine_config
from webhooks import Engine, Event, generate_secret, webhook_headers

BASELINE_MAX_JOBS = 64


def event_for(event_id: str) -> Event:
    """A job.completed event shaped like pixhook's (docs/webhooks.md), about 400 bytes."""
    output = {"url": "https://files.example.com/o/" + "x" * 120, "bytes": 48213}
    job = {"id": "job_" + event_id[-8:], "status": "succeeded", "sequence": 3, "output": output}
    job["operations"] = [{"op": "resize", "width": 800}, {"op": "format", "format": "webp"}]
    return Event("job.completed", event_id, job, "2025-01-01T00:00:00.000Z")


@dataclasses.dataclass(frozen=True)
class Figures:
    events: int
    rate: float  # (events - 1) / (last arrival - first arrival)
    cpu_s: float  # worker user+sys CPU from the first arrival until it settled after the last
    redis_cpu_s: float  # redis-server CPU over the same window
    start_cpu_s: float  # worker CPU from its start to the first arrival (imports, connecting)
    p50_ms: float  # enqueue (just before the submit/enqueue call) -> arrival at nginx
    p99_ms: float

    @property
    def per_cpu_s(self) -> float:
        return (self.events - 1) / self.cpu_s


def redis_of(server: EmbeddedRedis) -> psutil.Process:
    found = redis_process(server.port)
    if found is None:
        raise BenchError(f"no redis-server child on port {server.port}")
    return found


async def collect(
    name: str,
    worker: subprocess.Popen[bytes],
    log: Path,
    redis: psutil.Process,
    enqueued: dict[str, float],
    arrivals: Arrivals,
    timeout_s: float,
) -> Figures:
    """Wait until every enqueued event arrived, reading CPU at the first arrival and after the
    last one (once the worker settled); a worker that exits or a timeout fails the run."""
    process = psutil.Process(worker.pid)
    deadline = time.monotonic() + timeout_s
    arrived, first = 0, (0.0, 0.0)
    while arrived < len(enqueued):
        if worker.poll() is not None:
            raise BenchError(f"{name} worker exited with code {worker.returncode}\n{tail(log)}")
        if time.monotonic() > deadline:
            raise BenchError(
                f"{name}: only {arrived} of {len(enqueued)} deliveries arrived within "
                f"{timeout_s:g}s\n{tail(log)}"
            )
        new = sum(1 for event_id in arrivals.poll() if event_id in enqueued)
        if new and not arrived:
            first = cpu_seconds(process), cpu_seconds(redis)
        arrived += new
        await asyncio.sleep(0.01)
    # The worker still records the outcomes of the deliveries it sent last (arrival is not the
    # end of its work): CPU is read once it has settled, i.e. used at most one tick in 100 ms.
    settled, last = time.monotonic() + 5, cpu_seconds(process)
    while time.monotonic() < settled:
        await asyncio.sleep(0.1)
        last, previous = cpu_seconds(process), last
        if last - previous < 0.015:
            break
    cpu_s, redis_cpu_s = last - first[0], cpu_seconds(redis) - first[1]
    latencies = [(arrivals.at[e] - t) * 1000 for e, t in enqueued.items()]
    times = [arrivals.at[e] for e in enqueued]
    rate = (len(times) - 1) / max(max(times) - min(times), 0.001)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return Figures(len(times), rate, cpu_s, redis_cpu_s, first[0], p50, p99)


async def run_baseline(args: argparse.Namespace, workdir: Path, nginx: Nginx) -> Figures:
    server = EmbeddedRedis(workdir / "redis-baseline").start()
    log = workdir / "baseline-worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        pool = await create_pool(RedisSettings.from_dsn(server.url))
        enqueued: dict[str, float] = {}
        for i in range(args.events):
            event_id = f"evt_b{i:07d}"
            enqueued[event_id] = time.time()
            await pool.enqueue_job("deliver", event_id, event_for(event_id).body())
        await pool.aclose()
        env = {**os.environ, "BENCH_WEBHOOK_SECRET": generate_secret()}
        command = [sys.executable, "-m", "bench.deliveries", "--baseline-worker"]
        command += [server.url, nginx.url]
        arrivals, redis = Arrivals(nginx.log), redis_of(server)
        with log.open("wb") as out:
            worker = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        return await collect("baseline", worker, log, redis, enqueued, arrivals, args.timeout)
    finally:
        if worker is not None:
            stop_process(worker)
        server.stop()


async def run_pixhook(
    args: argparse.Namespace, workdir: Path, nginx: Nginx
) -> tuple[Figures, Figures]:
    """The bulk run, then the steady-rate run on the same (warm) worker."""
    server = EmbeddedRedis(workdir / "redis-pixhook").start()
    env = {
        "PIXHOOK_REDIS_URL": server.url,
        "PIXHOOK_SECRET_KEY": secrets.token_urlsafe(32),
        "PIXHOOK_STORAGE": f"local:{workdir / 'files'}",
        "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
    }
    processes = ServiceProcesses(env, workdir / "logs")
    log = workdir / "logs" / "worker-deliveries.log"
    client = Redis.from_url(server.url)
    clients = ClientStore(client)
    engine = Engine(client, engine_config(Settings.from_env(env)), clients.signing_secrets)
    try:
        owner = (await clients.create("bench")).client.id

        async def enqueue(event_id: str, enqueued: dict[str, float]) -> None:
            enqueued[event_id] = time.time()
            await engine.publish(
                event_for(event_id), owner=owner, direct_url=nginx.url, endpoints=[]
            )

        bulk_events: dict[str, float] = {}
        for i in range(args.events):
            await enqueue(f"evt_p{i:07d}", bulk_events)
        arrivals, redis = Arrivals(nginx.log), redis_of(server)
        worker = processes.start("worker-deliveries", "worker", "--queue", "deliveries")
        bulk = await collect("pixhook", worker, log, redis, bulk_events, arrivals, args.timeout)

        # Steady rate on a fixed schedule (no drift), then wait for the stragglers.
        steady_events: dict[str, float] = {}
        cpu_before, started = cpu_seconds(psutil.Process(worker.pid)), time.monotonic()
        for i in range(round(args.rate * args.seconds)):
            await asyncio.sleep(started + i / args.rate - time.monotonic())
            await enqueue(f"evt_s{i:07d}", steady_events)
        steady = await collect("steady", worker, log, redis, steady_events, arrivals, args.timeout)
        # Arrivals are read only after the last submit: the worker's CPU is taken around it all.
        cpu_s = cpu_seconds(psutil.Process(worker.pid)) - cpu_before
        return bulk, dataclasses.replace(steady, cpu_s=cpu_s)
    finally:
        await client.aclose()
        processes.stop()
        server.stop()


async def _deliver(ctx: dict[str, Any], event_id: str, payload: bytes) -> int:
    """The baseline's job: sign this message, POST it with the worker's one shared client."""
    headers = webhook_headers(ctx["secrets"], event_id, int(time.time()), payload)
    headers["content-type"] = "application/json"
    http: httpx.AsyncClient = ctx["http"]
    response = await http.post(ctx["url"], content=payload, headers=headers)
    response.raise_for_status()
    return response.status_code


def baseline_worker(redis_url: str, url: str) -> None:
    """A plain arq worker: max_jobs=64, default poll_delay, one shared httpx.AsyncClient whose
    keep-alive pool holds as many connections as jobs run at once (no reconnect churn)."""

    async def startup(ctx: dict[str, Any]) -> None:
        n = BASELINE_MAX_JOBS
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        ctx["http"] = httpx.AsyncClient(limits=limits, timeout=15.0)
        ctx["url"] = url
        ctx["secrets"] = [os.environ["BENCH_WEBHOOK_SECRET"]]

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "http" in ctx:
            await ctx["http"].aclose()

    Worker(
        [func(_deliver, name="deliver")],
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=BASELINE_MAX_JOBS,
        on_startup=startup,
        on_shutdown=shutdown,
    ).run()


def median(rounds: list[Figures]) -> Figures:
    """Field by field, the median (the lower one for an even count) over the rounds."""
    fields = dataclasses.fields(Figures)
    return Figures(*(statistics.median_low(getattr(f, x.name) for f in rounds) for x in fields))


def report(args: argparse.Namespace, rounds: list[tuple[Figures, Figures, Figures]]) -> str:
    base, pix, steady = (median([r[side] for r in rounds]) for side in range(3))
    columns = ("rate/s", "cpu-s", "per-cpu-s", "p50 ms", "p99 ms", "start cpu", "redis cpu")
    title = f"deliveries  N={args.events}" + (f" x{args.repeat}" if args.repeat > 1 else "")
    rows = [f"{title:<24}" + "".join(f"{c:>11}" for c in columns)]
    for name, f in (("baseline (arq+httpx)", base), ("pixhook", pix)):
        values = (f.rate, f.cpu_s, f.per_cpu_s, f.p50_ms, f.p99_ms, f.start_cpu_s, f.redis_cpu_s)
        formats = (".0f", ".2f", ".0f", ".0f", ".0f", ".2f", ".2f")
        cells = (f"{v:>11{spec}}" for v, spec in zip(values, formats, strict=True))
        rows.append(f"{name:<24}" + "".join(cells))
    # Each round's own ratio, then their median: rounds pair the two sides in time.
    rate_ratio = statistics.median(p.rate / b.rate for b, p, _ in rounds)
    cpu_ratio = statistics.median(p.per_cpu_s / b.per_cpu_s for b, p, _ in rounds)
    rows.append(f"{'ratio pixhook/baseline':<24}{rate_ratio:>10.1f}x{cpu_ratio:>21.1f}x")
    rows.append(
        f"steady {args.rate:g}/s pixhook   p50 {steady.p50_ms:.1f} ms  p99 {steady.p99_ms:.1f} ms"
        f"  ({steady.events} events in {args.seconds:g}s;"
        f" worker {steady.cpu_s / steady.events * 1000:.2f} cpu-ms/delivery incl. idle polling)"
    )
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pixhook vs arq+httpx webhook delivery bench")
    parser.add_argument("--events", type=int, default=5000, help="events per bulk run")
    parser.add_argument("--rate", type=float, default=200.0, help="steady run: events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady run: duration")
    parser.add_argument("--timeout", type=float, default=120.0, help="max wait per run (s)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians are printed")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and its logs")
    parser.add_argument("--baseline-worker", nargs=2, metavar=("REDIS", "URL"), help="(internal)")
    args = parser.parse_args(argv)
    if args.events < 2 or args.rate <= 0 or args.rate * args.seconds < 2 or args.repeat < 1:
        parser.error("--events and --rate x --seconds must be at least 2, --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_worker:
        baseline_worker(*args.baseline_worker)
        return 0
    if not os.access(args.nginx, os.X_OK):
        hint = "apt-get update && apt-get install -y nginx-light"
        print(f"bench: no nginx at {args.nginx}; install it: {hint}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="pixhook-bench-"))
    nginx = Nginx(workdir)
    rounds: list[tuple[Figures, Figures, Figures]] = []
    try:
        nginx.start(args.nginx)
        print(f"receiver {nginx.url}, work dir {workdir}", file=sys.stderr)
        for number in range(1, args.repeat + 1):  # interleaved, so drift hits both sides alike
            base = asyncio.run(run_baseline(args, workdir, nginx))
            pix, steady = asyncio.run(run_pixhook(args, workdir, nginx))
            rounds.append((base, pix, steady))
            print(
                f"round {number}: rate/s {base.rate:.0f} vs {pix.rate:.0f},"
                f" per-cpu-s {base.per_cpu_s:.0f} vs {pix.per_cpu_s:.0f},"
                f" steady p99 {steady.p99_ms:.1f} ms",
                file=sys.stderr,
            )
    except (BenchError, StackError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        nginx.stop()
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(args, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
