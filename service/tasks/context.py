"""What a running job may use besides its own record and image."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis

from service.config import Settings
from service.storage import Storage


@dataclass(frozen=True)
class TaskContext:
    # For a job the runner makes: its writes ride out storage outages (service/retrying_storage.py).
    storage: Storage
    settings: Settings
    redis: Redis
    # Adds an event (type, data) to the job's live stream (service/streams.py), e.g. model output.
    emit: Callable[[str, dict[str, Any]], Awaitable[str]]
    # The process's client for provider calls: its connections outlive one job.
    http: httpx.AsyncClient
