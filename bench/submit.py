"""API CPU per `POST /v1/jobs`: what accepting one job costs the API process.

Starts a stack (untimed), then posts `--jobs` submissions one after another, in `--repeat`
rounds, and divides the API process's CPU time over each round by its jobs. The bodies are the
three kinds a caller sends: an `image.transform` with a small base64 photo and two variants, an
`image.analyze` of an image URL, an `image.generate` prompt. The workers are stopped (SIGSTOP)
while a round is timed, so that the API has the machine to itself and its figure is not the
workers' contention; they run the queued jobs between rounds.

    .venv/bin/python -m bench.submit                # 300 jobs, 5 rounds, medians printed
    .venv/bin/python -m bench.submit --jobs 600 --repeat 7
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.api import post_accepted
from bench.errors import BenchError

API_PROCESS = "api"
WORKERS = ("worker-jobs", "worker-deliveries")


def photo() -> bytes:
    image = Image.new("RGB", (320, 240), (200, 120, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def bodies() -> list[bytes]:
    """One body of each kind, as JSON bytes."""
    image = {"base64": base64.b64encode(photo()).decode()}
    variants = {"thumb": {"width": 64}, "card": {"mode": "fill", "width": 120, "height": 90}}
    kinds: list[dict[str, Any]] = [
        {"type": "image.transform", "input": {"image": image, "variants": variants}},
        {
            "type": "image.analyze",
            "input": {"image": {"url": "http://127.0.0.1:9/photo.jpg"}},
            "metadata": {"sku": "A-1"},
        },
        {
            "type": "image.generate",
            "input": {"prompt": "a red chair", "width": 512, "height": 512},
            "webhook_events": ["started", "completed"],
        },
    ]
    return [json.dumps(kind, separators=(",", ":")).encode() for kind in kinds]


def run(jobs: int, repeat: int) -> list[float]:
    """CPU milliseconds of the API per accepted job, one figure per round."""
    import httpx

    from bench.processes import cpu_seconds, watch
    from service.cli.devstack import local_stack

    env = {
        # Rounds of hundreds of jobs back to back: neither the rate nor the quota may refuse one.
        "PIXHOOK_CLIENT_REQUESTS_PER_SECOND": "100000",
        "PIXHOOK_CLIENT_BURST": "100000",
        "PIXHOOK_CLIENT_MAX_IN_FLIGHT": "1000000",
    }
    kinds = bodies()
    figures = []
    with (
        tempfile.TemporaryDirectory(prefix="pixhook-bench-submit-") as workdir,
        local_stack(Path(workdir), env) as stack,
        httpx.Client(
            base_url=stack.api_url,
            headers={"authorization": f"Bearer {stack.client.api_key}"},
            timeout=60,
        ) as api,
    ):
        watched = watch(stack, {API_PROCESS: API_PROCESS, **{w: w for w in WORKERS}})
        api_process, workers = watched[API_PROCESS], [watched[w] for w in WORKERS]
        for body in kinds * 10:  # warm up: imports, connections, caches
            post_accepted(api, "/v1/jobs", body)
        for _ in range(repeat):
            for worker in workers:
                worker.suspend()
            before = cpu_seconds(api_process)
            for n in range(jobs):
                post_accepted(api, "/v1/jobs", kinds[n % len(kinds)])
            figures.append((cpu_seconds(api_process) - before) * 1000 / jobs)
            for worker in workers:
                worker.resume()
            time.sleep(0.5)  # the workers take up the queued jobs between rounds
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=300, help="jobs per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    args = parser.parse_args()
    try:
        figures = run(args.jobs, args.repeat)
    except BenchError as exc:
        print(f"bench failed: {exc}")
        return 1
    rounds = ", ".join(f"{figure:.3f}" for figure in figures)
    print(f"API CPU per POST /v1/jobs: {statistics.median(figures):.3f} ms (median; {rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
