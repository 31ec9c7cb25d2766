"""Hostile images against a stack of its own: checking one never holds up the API, and however
large the images a jobs worker decodes at once, its memory stays within its decode budget."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from PIL import Image

from service.cli.devstack import RunningStack, local_stack
from tests.support.images import many_page_tiff
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.openai_standin import API_KEY, OpenAIStandIn
from tests.support.stack_env import STACK_ENV

T = TypeVar("T")
MiB = 1 << 20
BUDGET = 256 * MiB
HOSTILE_ENV = {
    **STACK_ENV,
    # A frame limit high enough that counting a TIFF's pages runs into the deadline instead.
    "PIXHOOK_MAX_FRAMES": "1000000",
    "PIXHOOK_IMAGE_CHECK_TIMEOUT": "1s",
    "PIXHOOK_DECODE_BUDGET_BYTES": str(BUDGET),
}


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, openai_standin: OpenAIStandIn
) -> Iterator[RunningStack]:
    env = HOSTILE_ENV | {
        "PIXHOOK_OPENAI_BASE_URL": openai_standin.base_url,
        "PIXHOOK_OPENAI_API_KEY": API_KEY,
    }
    with local_stack(tmp_path_factory.mktemp("hostile"), env) as running:
        yield running


@pytest.fixture
def api(hostile: RunningStack) -> Iterator[httpx.Client]:
    auth = {"authorization": f"Bearer {hostile.client.api_key}"}
    with httpx.Client(base_url=hostile.api_url, headers=auth, timeout=10) as client:
        yield client


def worker_rss(stack: RunningStack) -> int:
    """The jobs worker's resident memory now, in bytes."""
    pid = stack.processes.processes["worker-jobs"].pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("the jobs worker has no VmRSS")


def peak_rss_during(stack: RunningStack, work: Callable[[], T]) -> tuple[T, int]:
    """`work()`'s result, and the jobs worker's highest RSS while it ran (sampled every 5 ms)."""
    done, peak = threading.Event(), [worker_rss(stack)]

    def sample() -> None:
        while not done.wait(0.005):
            peak.append(worker_rss(stack))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        return work(), max(peak)
    finally:
        done.set()
        sampler.join()


def blank_png(size: tuple[int, int]) -> bytes:
    """Transparent black: ~100 KB of PNG for 25 MP, 100 MB once decoded."""
    buffer = io.BytesIO()
    Image.new("RGBA", size).save(buffer, "PNG")
    return buffer.getvalue()


def thumbnail_jobs(api: httpx.Client, image: bytes, count: int) -> list[dict[str, object]]:
    """`count` jobs at once, docs/api.md's 512 px WebP thumbnail each; their records once ended."""
    body = transform_job(image)
    body["input"].update(width=512, height=512, format="webp")
    ids = [api.post("/v1/jobs", json=body).json()["id"] for _ in range(count)]
    return [wait_for_status(api, job_id, timeout_s=60) for job_id in ids]


def test_four_large_pngs_at_once_stay_within_the_decode_budget(hostile: RunningStack, api):
    """Issue 15, item 20: four 49 MP PNGs at once took the jobs worker to 1,560 MiB, past its
    pod's limit. Decodes are admitted by their estimated bytes against
    PIXHOOK_DECODE_BUDGET_BYTES (256 MiB here): four 25 MP ones need 100 MB each decoded."""
    idle, image = worker_rss(hostile), blank_png((5000, 5000))

    jobs, peak = peak_rss_during(hostile, lambda: thumbnail_jobs(api, image, 4))

    assert [job["status"] for job in jobs] == ["succeeded"] * 4, [job["error"] for job in jobs]
    assert peak - idle < BUDGET + 64 * MiB, f"{(peak - idle) / MiB:.0f} MiB above idle"


def test_preparing_photos_for_the_vision_model_stays_within_the_decode_budget(
    hostile: RunningStack, api, openai_standin
):
    """Issue 15, item 20: the analysis was admitted against the budget, but the copy prepared
    for the vision model was decoded beside it, outside the budget, four at once."""
    openai_standin.script([])
    photo = {"base64": base64.b64encode(blank_png((4000, 4000))).decode()}
    body = {"type": "image.analyze", "input": {"provider": "openai", "image": photo}}
    idle = worker_rss(hostile)

    def analyze_four() -> list[dict[str, object]]:
        ids = [api.post("/v1/jobs", json=body).json()["id"] for _ in range(4)]
        return [wait_for_status(api, job_id, timeout_s=60) for job_id in ids]

    jobs, peak = peak_rss_during(hostile, analyze_four)

    assert [job["status"] for job in jobs] == ["succeeded"] * 4, [job["error"] for job in jobs]
    assert peak - idle < BUDGET + 64 * MiB, f"{(peak - idle) / MiB:.0f} MiB above idle"


def test_a_decode_larger_than_the_whole_budget_fails_with_its_own_code(api):
    """A job that could never be admitted fails at once rather than take the worker past its
    memory: a 25 MP RGBA image re-encoded whole as WebP takes ~470 MiB, over the 256 here."""
    body = transform_job(blank_png((5000, 5000)))
    del body["input"]["width"]
    body["input"]["format"] = "webp"

    job = wait_for_status(api, api.post("/v1/jobs", json=body).json()["id"])

    assert (job["status"], job["error"]["code"]) == ("failed", "DECODE_TOO_LARGE")


def test_a_worker_gives_memory_back_after_large_decodes(hostile: RunningStack, api):
    """Issue 15, item 20: after four 49 MP PNGs the jobs worker's RSS stayed at 1.2-1.5 GB."""
    idle = worker_rss(hostile)
    thumbnail_jobs(api, blank_png((5000, 5000)), 4)

    deadline = time.monotonic() + 5
    while worker_rss(hostile) - idle > 48 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)

    assert worker_rss(hostile) - idle <= 48 * MiB, f"{(worker_rss(hostile) - idle) / MiB:.0f} MiB"


def test_other_requests_are_answered_while_an_image_is_checked(hostile: RunningStack):
    """Issue 15, item 19: /healthcheck waited 11.5 s while a request handler counted a TIFF's
    pages. Here the count runs to PIXHOOK_IMAGE_CHECK_TIMEOUT (1 s) and /healthcheck answers
    meanwhile."""
    auth = {"authorization": f"Bearer {hostile.client.api_key}"}
    body = transform_job(many_page_tiff(22_000))
    with (
        httpx.Client(base_url=hostile.api_url, headers=auth, timeout=10) as api,
        ThreadPoolExecutor(1) as pool,
    ):
        posted = pool.submit(api.post, "/v1/jobs", json=body)
        waits = []
        while not posted.done():
            started = time.monotonic()
            api.get("/healthcheck").raise_for_status()
            waits.append(time.monotonic() - started)
        response = posted.result()

    assert (response.status_code, error_of(response)["code"]) == (422, "IMAGE_TOO_COMPLEX")
    assert len(waits) > 1 and max(waits) < 0.5, waits
