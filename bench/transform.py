"""Thumbnail throughput, memory and fidelity: pixhook's imaging path against naive Pillow.

    .venv/bin/python bench/transform.py [--photos 5] [--rounds 2] [--repeat 3]

Both sides turn 24 MP photographic JPEGs into thumbnails that fit 512x512, WebP quality 80. Each
side runs in its own subprocess, so each peak RSS is its own. bench/README.md defines the figures.
"""

from __future__ import annotations

import argparse
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

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

from service import imaging

PHOTO_SIZE = (6000, 4000)
BOX = 512
QUALITY = 80
MAX_PIXELS = 50_000_000
CACHE = Path(tempfile.gettempdir()) / "pixhook-bench-photos"


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
            command = [sys.executable, __file__, "--make-photo", str(seed), str(path)]
            subprocess.run(command, check=True)
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
    started, cpu_started = time.perf_counter(), cpu_seconds()
    for _ in range(rounds):
        for path in paths:
            thumbnail(path.read_bytes())
    figures = {
        "images": rounds * len(paths),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu_started,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    print(json.dumps(figures))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(side: str, paths: list[Path], rounds: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--rounds", str(rounds)]
    result = subprocess.run(
        [*command, *map(str, paths)], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(result.stdout)
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
    """Resize fidelity (lossless PNG out) and delivered fidelity (WebP q80 out), both sides."""
    totals = {"resize_psnr": 0.0, "resize_ssim": 0.0, "webp_psnr": 0.0, "baseline_webp_psnr": 0.0}
    for path in paths:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as full:
            reference = full.convert("RGB").resize(fit_size(full.size), Image.Resampling.LANCZOS)
        resized = Image.open(io.BytesIO(pixhook_thumbnail(data, "png"))).convert("RGB")
        ours = Image.open(io.BytesIO(pixhook_thumbnail(data))).convert("RGB")
        theirs = Image.open(io.BytesIO(baseline_thumbnail(data))).convert("RGB")
        totals["resize_psnr"] += psnr(resized, reference)
        totals["resize_ssim"] += ssim(resized, reference)
        totals["webp_psnr"] += psnr(ours, reference)
        totals["baseline_webp_psnr"] += psnr(theirs, reference)
    return {name: total / len(paths) for name, total in totals.items()}


def report(paths: list[Path], rounds: int, repeat: int) -> None:
    megapixels = PHOTO_SIZE[0] * PHOTO_SIZE[1] / 1e6
    print(
        f"{len(paths)} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({megapixels:.0f} MP, JPEG q90), "
        f"{rounds} rounds per run, {repeat} interleaved runs per side "
        f"-> fit {BOX}x{BOX}, WebP q{QUALITY}"
    )
    # Interleaved, so load from anything else on the machine hits both sides alike.
    runs = [{side: measure(side, paths, rounds) for side in SIDES} for _ in range(repeat)]
    print(f"{'side':<10}{'images/s':>10}{'images/cpu-s':>14}{'peak RSS MiB':>14}   (medians)")
    for side in ("baseline", "pixhook"):
        rate = statistics.median(run[side]["images"] / run[side]["seconds"] for run in runs)
        per_cpu = statistics.median(run[side]["images"] / run[side]["cpu_seconds"] for run in runs)
        peak = statistics.median(run[side]["peak_rss_kib"] / 1024 for run in runs)
        print(f"{side:<10}{rate:>10.2f}{per_cpu:>14.2f}{peak:>14.1f}")

    def ratio(figure: str) -> float:
        return statistics.median(run["baseline"][figure] / run["pixhook"][figure] for run in runs)

    print(
        f"throughput: {ratio('seconds'):.1f}x the baseline's images/s, "
        f"{ratio('cpu_seconds'):.1f}x its images/cpu-s (goal >= 5x)"
    )
    print(f"peak RSS:   {1 / ratio('peak_rss_kib'):.2f} of the baseline's (goal <= 0.33)")
    quality = fidelity(paths)
    print(
        f"vs full-decode LANCZOS reference: resize PSNR {quality['resize_psnr']:.1f} dB "
        f"(goal >= 35), SSIM {quality['resize_ssim']:.4f}; "
        f"after WebP q{QUALITY}: pixhook {quality['webp_psnr']:.1f} dB, "
        f"baseline {quality['baseline_webp_psnr']:.1f} dB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--photos", type=int, default=5, help="how many test photos (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the photos per side")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per side")
    parser.add_argument("--child", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--make-photo", type=int, metavar="SEED", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_photo is not None:
        make_photo(args.make_photo).save(args.paths[0], "JPEG", quality=90)
    elif args.child:
        run_side(args.child, args.paths, args.rounds)
    else:
        report(photo_paths(args.photos), args.rounds, args.repeat)


if __name__ == "__main__":
    main()
