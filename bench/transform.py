"""Thumbnail throughput, memory and fidelity: pixhook's imaging path against naive Pillow.

    .venv/bin/python -m bench.transform [--photos 5] [--rounds 2] [--repeat 3] [--no-service]

Both in-process sides turn 24 MP photographic JPEGs into thumbnails that fit 512x512, WebP quality
80. Each side runs in its own subprocess, so each peak RSS is its own. The `service` side sends the
same photos with the same output spec through the whole running service (API, jobs worker, storage,
signed `job.completed` webhook). bench/README.md defines the figures.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

from bench.api import post_accepted, unix_seconds
from bench.errors import BenchError
from service import imaging

if TYPE_CHECKING:
    import httpx
    import psutil  # type: ignore[import-untyped]

    from bench.receivers import LocalServer

# The service side's imports (httpx, psutil, the dev stack, http.server: bench.processes and
# bench.receivers) happen in its own child only: the parent's RSS at each fork becomes the floor
# of that child's peak RSS.

PHOTO_SIZE = (6000, 4000)
BOX = 512
QUALITY = 80
MAX_PIXELS = 50_000_000
CACHE = Path(tempfile.gettempdir()) / "pixhook-bench-photos"
CHILD = [sys.executable, "-m", "bench.transform"]  # this bench, in a process of its own


# Test photos: smooth light, shapes, blur, then grain, so they compress like camera JPEGs.


def make_photo(seed: int) -> Image.Image:
    rng = random.Random(seed)
    small = (PHOTO_SIZE[0] // 4, PHOTO_SIZE[1] // 4)
    light = Image.merge(
        "RGB", [Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(small) for _ in "RGB"]
    )
    draw = ImageDraw.Draw(light)
    for _ in range(60):
        x, y = rng.randrange(small[0]), rng.randrange(small[1])
        radius = rng.randrange(20, 300)
        colour = tuple(rng.randrange(256) for _ in "RGB")
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x - radius, y - radius, x + radius, y + radius), fill=colour)
    # Soft edges at 1/4 scale, then upsampled: blur wide enough to read as optics, not vectors.
    photo = light.filter(ImageFilter.GaussianBlur(6)).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
    grain = Image.effect_noise(PHOTO_SIZE, 24).convert("RGB")
    detailed = ImageChops.add(photo, grain, scale=1.0, offset=-128)  # sensor noise and texture
    return detailed.filter(ImageFilter.GaussianBlur(0.8))


def photo_paths(count: int) -> list[Path]:
    CACHE.mkdir(exist_ok=True)
    paths = [CACHE / f"photo-{seed}.jpg" for seed in range(count)]
    for seed, path in enumerate(paths):
        if not path.exists():
            print(f"making {path} ...", file=sys.stderr, flush=True)
            # In a child: a child's ru_maxrss starts from its parent's peak at the fork, so the
            # parent stays small until both sides have been measured.
            subprocess.run([*CHILD, "--make-photo", str(seed), str(path)], check=True)
    return paths


# The two sides. Each reads the file, makes the thumbnail bytes, and keeps nothing.


def pixhook_thumbnail(data: bytes, fmt: str = "webp") -> bytes:
    spec = imaging.OutputSpec(width=BOX, height=BOX, format=fmt, quality=QUALITY)
    return imaging.transform(data, spec, MAX_PIXELS).data


def baseline_thumbnail(data: bytes, fmt: str = "webp") -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        resized = image.resize(fit_size(image.size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, fmt.upper(), quality=QUALITY)
    return buffer.getvalue()


SIDES: dict[str, Callable[[bytes], bytes]] = {
    "pixhook": pixhook_thumbnail,
    "baseline": baseline_thumbnail,
}


def fit_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, BOX / size[0], BOX / size[1])
    return round(size[0] * scale), round(size[1] * scale)


def run_side(side: str, paths: list[Path], rounds: int) -> None:
    """Child process: make every thumbnail `rounds` times, print the loop's time and peak RSS."""
    thumbnail = SIDES[side]
    # Untimed: the first call loads codecs and plugins, once per worker, not once per image.
    thumbnail(paths[0].read_bytes())
    started, cpu_started = time.perf_counter(), own_cpu_seconds()
    for _ in range(rounds):
        for path in paths:
            thumbnail(path.read_bytes())
    figures = {
        "images": rounds * len(paths),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": own_cpu_seconds() - cpu_started,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    print(json.dumps(figures))


def own_cpu_seconds() -> float:
    """This process's user + system CPU time, from getrusage (no psutil in the sides' children)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(side: str, paths: list[Path], rounds: int) -> dict[str, float]:
    command = [*CHILD, "--child", side, "--rounds", str(rounds)]
    result = subprocess.run(
        [*command, *map(str, paths)], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


# The service side: the same jobs through the API, the jobs worker, storage and a signed webhook.

SERVICE_PROCESSES = ("api", "worker-jobs", "worker-deliveries")
SERVICE_TIMEOUT_S = 600.0
JOB_ENDS = ("job.completed", "job.failed", "job.canceled")


def job_body(image: dict[str, str], webhook_url: str | None = None) -> bytes:
    """The first job of docs/api.md: the output spec of `pixhook_thumbnail`, the image as given
    (`{"base64": ...}` or `{"url": ...}`), and the webhook URL if there is one."""
    spec = {"width": BOX, "height": BOX, "format": "webp", "quality": QUALITY}
    job: dict[str, Any] = {"type": "image.transform", "input": {"image": image, **spec}}
    if webhook_url is not None:
        job["webhook_url"] = webhook_url
    return json.dumps(job).encode()


def webhook_arrivals(server: LocalServer, job_ids: list[str]) -> list[float]:
    """Arrival times of the jobs' `job.completed` webhooks, waiting for all of them."""
    ends = server.wait_for_events(job_ids, JOB_ENDS, SERVICE_TIMEOUT_S)
    if len(ends) < len(job_ids):
        raise BenchError(
            f"{len(job_ids) - len(ends)} of {len(job_ids)} webhooks missing after "
            f"{SERVICE_TIMEOUT_S:g}s ({server.rejected} failed verification)"
        )
    failed = [job_id for job_id in job_ids if ends[job_id][1] != "job.completed"]
    if failed:
        raise BenchError(f"{len(failed)} jobs did not complete, e.g. {failed[0]}")
    return [ends[job_id][0] for job_id in job_ids]


def run_batch(
    api: httpx.Client,
    server: LocalServer,
    bodies: list[bytes],
    processes: dict[str, psutil.Process],
) -> dict[str, Any]:
    """Submit every body, wait for every verified `job.completed`; times and service CPU."""
    from bench.processes import cpu_seconds

    cpu_before = {name: cpu_seconds(process) for name, process in processes.items()}
    started = time.time()
    job_ids = [post_accepted(api, "/v1/jobs", body)["id"] for body in bodies]
    submitted = time.time()
    arrived = webhook_arrivals(server, job_ids)
    last = max(arrived)
    cpu = {name: cpu_seconds(process) - cpu_before[name] for name, process in processes.items()}
    jobs = [api.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
    finished = [unix_seconds(job["finished_at"]) for job in jobs]
    return {
        "images": len(bodies),
        "seconds": last - started,
        "post_seconds": (submitted - started) / len(bodies),  # the API's answer to one POST
        # the jobs worker's own time per job: started_at -> finished_at in the job record
        "job_seconds": statistics.median(
            unix_seconds(job["finished_at"]) - unix_seconds(job["started_at"]) for job in jobs
        ),
        # from one job's finish to the next one's start: arq's pick-up of the next job
        "gap_seconds": statistics.median(
            [unix_seconds(b["started_at"]) - a for a, b in zip(finished, jobs[1:], strict=False)]
            or [0.0]
        ),
        "webhook_seconds": statistics.median(a - f for a, f in zip(arrived, finished, strict=True)),
        "cpu_seconds": cpu,
        "output": jobs[0]["output"],
    }


def run_service(paths: list[Path], rounds: int, repeat: int, concurrency: int) -> None:
    """Child process: start the stack (untimed), warm up with one job, then `repeat` batches of
    `rounds` passes over the photos; print each batch's figures."""
    import httpx

    from bench.processes import watch
    from bench.receivers import LocalServer
    from service.cli.devstack import local_stack

    photos = [path.read_bytes() for path in paths]
    env = {
        "PIXHOOK_JOB_CONCURRENCY": str(concurrency),
        # base64 adds a third; the JSON around it is small
        "PIXHOOK_MAX_REQUEST_BYTES": str(2 * max(map(len, photos)) + 1024 * 1024),
    }
    with (
        tempfile.TemporaryDirectory(prefix="pixhook-bench-transform-") as workdir,
        local_stack(Path(workdir), env) as stack,
        LocalServer(secret=stack.client.webhook_secret) as server,
        httpx.Client(
            base_url=stack.api_url,
            headers={"authorization": f"Bearer {stack.client.api_key}"},
            timeout=120,
        ) as api,
    ):
        bodies = [
            job_body({"base64": base64.b64encode(p).decode()}, server.hook_url) for p in photos
        ]
        processes = watch(stack, {name: name for name in SERVICE_PROCESSES})
        warm_up = run_batch(api, server, bodies[:1], processes)
        # Same output spec, same bytes: the service's thumbnail is the in-process one.
        url = warm_up["output"]["images"][0]["url"]
        same = api.get(url).content == pixhook_thumbnail(photos[0])
        batches = [run_batch(api, server, bodies * rounds, processes) for _ in range(repeat)]
    for batch in batches:
        del batch["output"]
    print(json.dumps({"same_output": same, "batches": batches}))


def measure_service(
    paths: list[Path], rounds: int, repeat: int, concurrency: int
) -> dict[str, Any]:
    command = [*CHILD, "--service-child", str(concurrency)]
    command += ["--rounds", str(rounds), "--repeat", str(repeat), *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"the service run failed:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


# Fidelity against the full-decode LANCZOS reference.


def psnr(image: Image.Image, reference: Image.Image) -> float:
    stat = ImageStat.Stat(ImageChops.difference(image, reference))
    mse = sum(stat.sum2) / (len(stat.sum2) * image.width * image.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def ssim(image: Image.Image, reference: Image.Image, window: int = 8) -> float:
    """Mean SSIM of the luma over non-overlapping windows: pure Python, fine at thumbnail size."""
    a, b = image.convert("L"), reference.convert("L")
    pixels_a, pixels_b, width = a.tobytes(), b.tobytes(), a.width
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for top in range(0, a.height - window + 1, window):
        for left in range(0, width - window + 1, window):
            rows = range(top * width + left, (top + window) * width + left, width)
            xs = [pixels_a[i + k] for i in rows for k in range(window)]
            ys = [pixels_b[i + k] for i in rows for k in range(window)]
            n = len(xs)
            mean_x, mean_y = sum(xs) / n, sum(ys) / n
            var_x = sum((x - mean_x) ** 2 for x in xs) / n
            var_y = sum((y - mean_y) ** 2 for y in ys) / n
            cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / n
            scores.append(
                ((2 * mean_x * mean_y + c1) * (2 * cov + c2))
                / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
            )
    return sum(scores) / len(scores)


def fidelity(paths: list[Path]) -> dict[str, float]:
    """Resize fidelity (lossless PNG out); delivered fidelity and size (WebP q80), both sides."""
    figures = ("resize_psnr", "resize_ssim", "webp_psnr", "baseline_webp_psnr")
    totals = dict.fromkeys((*figures, "bytes", "baseline_bytes"), 0.0)
    for path in paths:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as full:
            reference = full.convert("RGB").resize(fit_size(full.size), Image.Resampling.LANCZOS)
        resized = Image.open(io.BytesIO(pixhook_thumbnail(data, "png"))).convert("RGB")
        our_webp, their_webp = pixhook_thumbnail(data), baseline_thumbnail(data)
        ours = Image.open(io.BytesIO(our_webp)).convert("RGB")
        theirs = Image.open(io.BytesIO(their_webp)).convert("RGB")
        totals["bytes"] += len(our_webp)
        totals["baseline_bytes"] += len(their_webp)
        totals["resize_psnr"] += psnr(resized, reference)
        totals["resize_ssim"] += ssim(resized, reference)
        totals["webp_psnr"] += psnr(ours, reference)
        totals["baseline_webp_psnr"] += psnr(theirs, reference)
    return {name: total / len(paths) for name, total in totals.items()}


def report(paths: list[Path], rounds: int, repeat: int, concurrencies: list[int]) -> None:
    megapixels = PHOTO_SIZE[0] * PHOTO_SIZE[1] / 1e6
    print(
        f"{len(paths)} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({megapixels:.0f} MP, JPEG q90), "
        f"{rounds} rounds per run, {repeat} interleaved runs per side "
        f"-> fit {BOX}x{BOX}, WebP q{QUALITY}"
    )
    # Interleaved, so load from anything else on the machine hits both sides alike.
    runs = [{side: measure(side, paths, rounds) for side in SIDES} for _ in range(repeat)]
    # Then the service, one stack per concurrency, `repeat` batches on each.
    services = {c: measure_service(paths, rounds, repeat, c) for c in concurrencies}
    print(f"{'side':<12}{'images/s':>10}{'images/cpu-s':>14}{'peak RSS MiB':>14}   (medians)")
    rates = {}
    for side in ("baseline", "pixhook"):
        rates[side] = statistics.median(run[side]["images"] / run[side]["seconds"] for run in runs)
        per_cpu = statistics.median(run[side]["images"] / run[side]["cpu_seconds"] for run in runs)
        peak = statistics.median(run[side]["peak_rss_kib"] / 1024 for run in runs)
        print(f"{side:<12}{rates[side]:>10.2f}{per_cpu:>14.2f}{peak:>14.1f}")
    for concurrency, service in services.items():
        batches = service["batches"]
        rate = statistics.median(b["images"] / b["seconds"] for b in batches)
        per_cpu = statistics.median(b["images"] / sum(b["cpu_seconds"].values()) for b in batches)
        print(f"{f'service c={concurrency}':<12}{rate:>10.2f}{per_cpu:>14.2f}{'-':>14}")
        rates[f"service c={concurrency}"] = rate

    def ratio(figure: str) -> float:
        return statistics.median(run["baseline"][figure] / run["pixhook"][figure] for run in runs)

    print(
        f"throughput: {ratio('seconds'):.1f}x the baseline's images/s, "
        f"{ratio('cpu_seconds'):.1f}x its images/cpu-s (goal >= 5x)"
    )
    print(f"peak RSS:   {1 / ratio('peak_rss_kib'):.2f} of the baseline's (goal <= 0.33)")
    for concurrency, service in services.items():
        batches = service["batches"]

        def ms(figure: str, batches: list[dict[str, Any]] = batches) -> float:
            return 1000 * statistics.median(float(b[figure]) for b in batches)

        def per_image(name: str, batches: list[dict[str, Any]] = batches) -> float:
            return statistics.median(float(b["cpu_seconds"][name] / b["images"]) for b in batches)

        share = rates[f"service c={concurrency}"] / rates["pixhook"]
        # Between one job's finish and the next one's start; only meaningful one job at a time.
        gap = f"pick-up gap {ms('gap_seconds'):.0f} ms, " if concurrency == 1 else ""
        print(
            f"service c={concurrency}: {share:.2f} of in-process pixhook's images/s "
            f"(goal >= 0.85), output bytes {'identical' if service['same_output'] else 'DIFFER'}; "
            f"per job: POST {ms('post_seconds'):.0f} ms, "
            f"in worker {ms('job_seconds'):.0f} ms, {gap}"
            f"finish->webhook {ms('webhook_seconds'):.0f} ms; "
            f"CPU-s/image: api {per_image('api'):.3f}, jobs worker {per_image('worker-jobs'):.3f}, "
            f"deliveries worker {per_image('worker-deliveries'):.3f}"
        )
    quality = fidelity(paths)
    print(
        f"vs full-decode LANCZOS reference: resize PSNR {quality['resize_psnr']:.1f} dB "
        f"(goal >= 35), SSIM {quality['resize_ssim']:.4f}; "
        f"after WebP q{QUALITY}: pixhook {quality['webp_psnr']:.1f} dB, "
        f"baseline {quality['baseline_webp_psnr']:.1f} dB; "
        f"WebP bytes: pixhook {quality['bytes']:.0f} (effort {imaging.DEFAULT_WEBP_EFFORT}), "
        f"baseline {quality['baseline_bytes']:.0f} (Pillow's default, 4): "
        f"{quality['bytes'] / quality['baseline_bytes'] - 1:+.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--photos", type=int, default=5, help="how many test photos (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the photos per side")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per side")
    parser.add_argument(
        "--service-concurrency",
        type=int,
        nargs="+",
        default=[1, 4],
        metavar="C",
        help="PIXHOOK_JOB_CONCURRENCY of each service run (default: 1 4)",
    )
    parser.add_argument(
        "--no-service", action="store_true", help="skip the service side (API, worker, webhook)"
    )
    parser.add_argument("--child", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--service-child", type=int, metavar="C", help=argparse.SUPPRESS)
    parser.add_argument("--make-photo", type=int, metavar="SEED", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_photo is not None:
        make_photo(args.make_photo).save(args.paths[0], "JPEG", quality=90)
    elif args.child:
        run_side(args.child, args.paths, args.rounds)
    elif args.service_child is not None:
        run_service(args.paths, args.rounds, args.repeat, args.service_child)
    else:
        concurrencies = [] if args.no_service else args.service_concurrency
        report(photo_paths(args.photos), args.rounds, args.repeat, concurrencies)


if __name__ == "__main__":
    main()
