"""Bounded memory under bad input: the jobs worker's and API's RSS, fed bad images repeatedly.

    .venv/bin/python -m bench.bad_inputs [--rounds 20] [--together] [--no-photo] [--timeout 60]
        [--only NAME] [--copies N] [--route url|base64|both]

Starts the whole stack (`service.cli.devstack.local_stack`, default limits) and serves the bad-image
set of bench/bad_files.py (hostile files, and valid ones just under the limits), plus one valid
24 MP photo, from an HTTP server on 127.0.0.1. Each file goes in as an `image.transform` job by
URL (the jobs worker downloads, sniffs and decodes it) and by base64 (the API checks it first).
A warm-up round, then R measured rounds of the whole set; every job is awaited by polling
`GET /v1/jobs/{id}`, and a thread samples both processes' RSS every 50 ms. bench/README.md
defines the figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

from bench.api import unix_seconds
from bench.bad_files import SUCCEEDED, Kind, make_kinds
from bench.errors import BenchError
from bench.figures import MiB, mib
from bench.processes import Sampler, high_water_mark, watch
from bench.receivers import File, LocalServer
from bench.stack import check_alive, print_log_tails
from bench.transform import job_body
from service.cli.devstack import RunningStack, local_stack
from service.config import Settings

WATCHED = {"jobs worker": "worker-jobs", "api": "api"}  # label -> the stack's process name
POLL_EVERY_S = 0.02
TERMINAL = ("succeeded", "failed", "canceled")
ROUTES = ("url", "base64")


def files_of(kinds: list[Kind]) -> dict[str, File]:
    """What the local server answers: each kind under its own name, with its media type."""
    return {f"/{kind.file}": (kind.media_type, kind.data) for kind in kinds}


def kind_job(kind: Kind, route: str, files_url: str) -> bytes:
    """bench/transform.py's job (or the kind's own output), the image by URL or base64."""
    if route == "url":
        image = {"url": f"{files_url}/{kind.file}"}
    else:
        image = {"base64": base64.b64encode(kind.data).decode()}
    if not kind.spec:
        return job_body(image)
    return json.dumps({"type": "image.transform", "input": {"image": image, **kind.spec}}).encode()


def as_expected(kind: Kind, result: str) -> bool:
    """`succeeded`, or the expected code whether the API refused it or the job failed with it."""
    return result == kind.expect if kind.expect == SUCCEEDED else result.endswith(f" {kind.expect}")


# Submitting and waiting.


@dataclass
class Span:
    """From just before a group's first POST to just after its last job ended."""

    start: float
    start_rss: dict[str, int]
    end: float = 0.0


@dataclass
class Outcome:
    kind: Kind
    route: str
    round: int
    span: Span
    post_ms: float
    result: str = ""  # "422 IMAGE_TOO_LARGE" (refused by the API), "failed INVALID_IMAGE", ...
    worker_ms: float | None = None  # started_at -> finished_at of the job record
    job_id: str | None = None
    status_after_run: str = ""  # a job that did not end in time: its status after the last round


@dataclass
class Round:
    number: int
    outcomes: list[Outcome] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    end_rss: dict[str, int] = field(default_factory=dict)


def error_code(body: dict[str, Any] | None) -> str:
    return str((body or {}).get("code", "?"))


def run_group(
    api: httpx.Client,
    stack: RunningStack,
    sampler: Sampler,
    items: list[tuple[Kind, str, bytes]],
    number: int,
    timeout_s: float,
) -> tuple[list[Outcome], list[Outcome]]:
    """POST every body, then poll until each job ended: (outcomes, the ones still not ended)."""
    start, start_rss = sampler.sample()
    span = Span(start, start_rss)
    outcomes, pending = [], {}
    for kind, route, body in items:
        posted = time.perf_counter()
        response = api.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
        outcome = Outcome(kind, route, number, span, 1000 * (time.perf_counter() - posted))
        outcomes.append(outcome)
        if response.status_code == 202:
            outcome.job_id = response.json()["id"]
            pending[outcome.job_id] = outcome
        else:
            outcome.result = f"{response.status_code} {error_code(response.json().get('error'))}"
    deadline = time.monotonic() + timeout_s
    status = dict.fromkeys(pending, "queued")
    while pending and time.monotonic() < deadline:
        check_alive(stack)
        for job_id, outcome in list(pending.items()):
            response = api.get(f"/v1/jobs/{job_id}")
            if response.status_code == 429:  # dozens of jobs polled every 20 ms pass the rate
                time.sleep(float(response.headers.get("retry-after", "1")))
                break
            job = response.json()
            status[job_id] = job["status"]
            if job["status"] in TERMINAL:
                ok = job["status"] == "succeeded"
                outcome.result = (
                    "succeeded" if ok else f"{job['status']} {error_code(job['error'])}"
                )
                if job["started_at"] and job["finished_at"]:
                    elapsed = unix_seconds(job["finished_at"]) - unix_seconds(job["started_at"])
                    outcome.worker_ms = 1000 * elapsed
                del pending[job_id]
        if pending:
            time.sleep(POLL_EVERY_S)
    for job_id, outcome in pending.items():
        outcome.result = f"NOT ENDED in {timeout_s:g}s (last seen {status[job_id]})"
    span.end, _ = sampler.sample()
    return outcomes, list(pending.values())


def run_stack(
    kinds: list[Kind], routes: list[str], copies: int, rounds: int, together: bool, timeout_s: float
) -> tuple[list[Round], dict[str, dict[str, int]], Sampler]:
    """Warm-up round 0 and rounds 1..R against a fresh stack; RSS readings and the sampler."""
    with (
        LocalServer(files_of(kinds).get) as server,
        tempfile.TemporaryDirectory(prefix="pixhook-bench-bad-inputs-") as workdir,
        local_stack(Path(workdir)) as stack,
    ):
        items = [
            (kind, route, kind_job(kind, route, server.url))
            for kind in kinds
            for route in routes
            for _ in range(copies)
        ]
        groups = [items] if together else [[item] for item in items]
        processes = watch(stack, WATCHED)
        sampler = Sampler(processes)
        auth = {"authorization": f"Bearer {stack.client.api_key}"}
        readings: dict[str, dict[str, int]] = {}
        done: list[Round] = []
        late: list[Outcome] = []
        try:
            with httpx.Client(base_url=stack.api_url, headers=auth, timeout=60) as api:
                time.sleep(1.0)
                readings["idle"] = sampler.sample()[1]
                for number in range(rounds + 1):
                    current = Round(number, start=time.monotonic())
                    for group in groups:
                        outcomes, not_ended = run_group(
                            api, stack, sampler, group, number, timeout_s
                        )
                        current.outcomes += outcomes
                        late += not_ended
                    current.end, current.end_rss = sampler.sample()
                    done.append(current)
                    if number % 10 == 0 or number == rounds:
                        print(f"round {number}/{rounds} done", file=sys.stderr, flush=True)
                time.sleep(1.0)
                readings["end"] = sampler.sample()[1]
                readings["hwm"] = {name: high_water_mark(p.pid) for name, p in processes.items()}
                for outcome in late:
                    job = api.get(f"/v1/jobs/{outcome.job_id}").json()
                    outcome.status_after_run = job["status"]
        except (BenchError, psutil.Error):
            print_log_tails(Path(workdir) / "logs")
            raise
        finally:
            sampler.close()
    return done, readings, sampler


# The report.


def report(
    kinds: list[Kind],
    routes: list[str],
    rounds: list[Round],
    readings: dict[str, dict[str, int]],
    sampler: Sampler,
    together: bool,
    timeout_s: float,
) -> int:
    """Print the figures; 1 if a job never ended or a kind had an unexpected outcome."""
    measured = rounds[1:]
    first, last = measured[0], measured[-1]
    problems = []
    worker_rise: dict[str, tuple[int, bool]] = {}  # input and route -> (largest rise, accepted)
    # The stack's processes inherit this environment: these are the limits they ran with.
    settings = Settings.from_env(os.environ)
    limits = settings.limits
    print(
        f"{len(measured)} rounds after 1 warm-up, "
        + ("each round's set submitted at once" if together else "one job at a time")
        + f"; job concurrency {settings.jobs.concurrency}, max pixels {limits.max_image_pixels:,}, "
        f"max frames {limits.max_frames}, max image bytes {limits.max_image_bytes:,}, "
        f"decode budget {mib(settings.jobs.decode_budget_bytes)} MiB"
    )
    header = f"{'input':<34}{'route':<8}{'bytes':>11}  {'outcome (every round)':<36}"
    print(header + f"{'POST ms':>8}{'worker ms':>10}{'worker rise':>13}{'api rise':>10}")
    for kind in kinds:
        for route in routes:
            mine = [o for r in rounds for o in r.outcomes if (o.kind, o.route) == (kind, route)]
            results = Counter(o.result for o in mine)
            text = ", ".join(f"{result} x{count}" for result, count in results.items())
            if not all(as_expected(kind, result) for result in results):
                problems.append(f"{kind.name} by {route}: {text}, expected {kind.expect}")
            post_ms = statistics.median(o.post_ms for o in mine)
            worker = [o.worker_ms for o in mine if o.worker_ms is not None]
            worker_ms = f"{statistics.median(worker):.0f}" if worker else "-"
            rises = {name: "-" for name in WATCHED}
            if not together:  # each job is its own span: its peak is its own
                for name in WATCHED:
                    spans = [o.span for o in mine if o.round > 0]
                    peaks = [sampler.peak(name, s.start, s.end) - s.start_rss[name] for s in spans]
                    rises[name] = mib(max(peaks))
                    if name == "jobs worker":
                        accepted = kind.expect == SUCCEEDED
                        worker_rise[f"{kind.name} by {route}"] = (max(peaks), accepted)
            print(
                f"{kind.name:<34}{route:<8}{len(kind.data):>11,}  {text:<36}"
                f"{post_ms:>8.0f}{worker_ms:>10}{rises['jobs worker']:>13}{rises['api']:>10}"
            )
    print()
    middle = rounds[(last.number + 1) // 2]
    print(
        f"{'RSS MiB':<13}{'idle':>7}{'warm-up end':>13}{'peak':>8}{'VmHWM':>8}"
        f"{'round 1 end':>13}{f'round {last.number} end':>14}{'growth':>8}"
        f"{f'from {middle.number}':>10}{'end':>8}"
    )
    for name in WATCHED:
        peak = sampler.peak(name, first.start, last.end)
        growth = last.end_rss[name] - first.end_rss[name]
        late_growth = last.end_rss[name] - middle.end_rss[name]
        print(
            f"{name:<13}{mib(readings['idle'][name]):>7}{mib(rounds[0].end_rss[name]):>13}"
            f"{mib(peak):>8}{mib(readings['hwm'][name]):>8}{mib(first.end_rss[name]):>13}"
            f"{mib(last.end_rss[name]):>14}{growth / MiB:>+8.1f}{late_growth / MiB:>+10.1f}"
            f"{mib(readings['end'][name]):>8}"
        )
    # At most 11 columns: rounds 0 and 1, then evenly spaced to the last.
    columns = sorted({0, 1, *(round(1 + i * (last.number - 1) / 9) for i in range(10))})
    print(f"\n{'round':<19}" + "".join(f"{number:>7}" for number in columns))
    for name in WATCHED:
        ends = "".join(f"{mib(rounds[n].end_rss[name]):>7}" for n in columns)
        since = [rounds[0].start, *(rounds[n].end for n in columns)]
        highs = "".join(
            f"{mib(sampler.peak(name, since[i], rounds[n].end)):>7}" for i, n in enumerate(columns)
        )
        print(f"{name + ' at end':<19}{ends}\n{name + ' peak':<19}{highs}")
    round_ends = [r.end_rss["jobs worker"] for r in measured]
    late_growth = last.end_rss["jobs worker"] - middle.end_rss["jobs worker"]
    headline = (
        f"jobs worker: growth of RSS at round ends, round 1 -> {last.number}: "
        f"{(last.end_rss['jobs worker'] - first.end_rss['jobs worker']) / MiB:+.1f} MiB "
        f"({middle.number} -> {last.number}: {late_growth / MiB:+.1f} MiB; "
        f"range {mib(min(round_ends))}-{mib(max(round_ends))} MiB), "
        f"peak {mib(sampler.peak('jobs worker', first.start, last.end))} MiB"
    )
    for accepted, what in ((False, "a refused input"), (True, "an accepted one")):
        largest = max(
            ((rise, name) for name, (rise, ok) in worker_rise.items() if ok == accepted),
            default=None,
        )
        if largest is not None:
            headline += f"; largest rise for {what} {mib(largest[0])} MiB ({largest[1]})"
    print(f"\n{headline}")
    jobs = [o for r in rounds for o in r.outcomes if o.job_id]
    late = [o for o in jobs if o.status_after_run]
    print(
        f"jobs: {len(jobs)} accepted, {len(jobs) - len(late)} ended within {timeout_s:g}s, "
        f"{len(late)} did not"
    )
    for outcome in late:
        print(
            f"  not ended in time: {outcome.job_id} ({outcome.kind.name} by {outcome.route}, "
            f"round {outcome.round}); after the last round: {outcome.status_after_run}"
        )
    for problem in problems:
        print(f"UNEXPECTED: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument(
        "--together", action="store_true", help="submit each round's set at once, not one by one"
    )
    parser.add_argument(
        "--no-photo", action="store_true", help="leave out the valid 24 MP photo: bad inputs only"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="how long a job may take to end (default 60 s)"
    )
    parser.add_argument("--only", help="only the inputs whose name starts with this text")
    parser.add_argument("--copies", type=int, default=1, help="jobs per input and route (1)")
    parser.add_argument("--route", choices=[*ROUTES, "both"], default="both", help="(both)")
    args = parser.parse_args()
    if args.rounds < 1 or args.copies < 1:
        parser.error("--rounds and --copies must be at least 1")
    kinds = [k for k in make_kinds(not args.no_photo) if k.name.startswith(args.only or "")]
    if not kinds:
        parser.error(f"no input's name starts with {args.only!r}")
    routes = list(ROUTES) if args.route == "both" else [args.route]
    rounds, readings, sampler = run_stack(
        kinds, routes, args.copies, args.rounds, args.together, args.timeout
    )
    return report(kinds, routes, rounds, readings, sampler, args.together, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
