"""What a running job may use besides its own record and image."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis

from service import imaging
from service.config import Settings
from service.errors import JobFailure
from service.imaging.decode_budget import DecodeBudget, OverBudget
from service.jobs.metrics import JobMetrics
from service.providers.calls import ProviderCalls
from service.storage import Storage

T = TypeVar("T")


async def inspect_image(data: bytes, settings: Settings) -> imaging.ImageInfo:
    """The image's headers judged against the pixel and frame limits, in a thread and within
    `PIXHOOK_IMAGE_CHECK_TIMEOUT`: a hostile header takes its time, and a worker's loop must go
    on with its heartbeats and other jobs. Raises `imaging.ImageRejected`."""
    return await asyncio.to_thread(
        imaging.inspect,
        data,
        settings.limits.max_image_pixels,
        settings.limits.max_frames,
        settings.limits.image_check_timeout_s,
    )


@dataclass(frozen=True)
class TaskContext:
    # For a job the runner makes: its writes ride out storage outages (service/retrying_storage.py).
    storage: Storage
    settings: Settings
    redis: Redis
    # Adds an event (type, data) to the job's live stream (service/jobs/streams.py): model output.
    emit: Callable[[str, dict[str, Any]], Awaitable[str]]
    # The process's client for provider calls: its connections outlive one job.
    http: httpx.AsyncClient
    # The process's memory for decoding images, shared by the jobs it runs at once.
    decode_budget: DecodeBudget

    def providers(self) -> ProviderCalls:
        """Provider calls through the process's client, counted in /metrics."""
        return ProviderCalls(self.settings, self.redis, self.http, JobMetrics(self.redis))

    async def decode(self, estimate: Callable[[], int], work: Callable[[], T]) -> T:
        """`work()`, an image decode, in a thread once the bytes `estimate()` reads from the
        image's headers (in a thread too) fit in the budget; an image Pillow rejects, or one
        that could never fit, fails the job with its code."""
        try:
            needed = await asyncio.to_thread(estimate)
            return await self.decode_budget.run(needed, work)
        except imaging.ImageRejected as exc:
            raise JobFailure(str(exc), code=exc.code) from exc
        except OverBudget as exc:
            raise JobFailure(
                f"decoding this image for this job takes about {exc.needed >> 20} MiB, more than "
                f"the {exc.budget >> 20} MiB a worker decodes with at once: ask for smaller "
                "outputs, or send a smaller image",
                code="DECODE_TOO_LARGE",
            ) from exc
