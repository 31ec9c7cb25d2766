"""What a running job may use besides its own record and image."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from service.config import Settings
from service.storage import Storage


@dataclass(frozen=True)
class TaskContext:
    storage: Storage
    settings: Settings
    redis: Redis
