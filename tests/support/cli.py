"""Running the `pixhook` CLI as a user does: a process of its own, against a stack's Redis."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.in_process import HasRedis


def pixhook(
    stack: HasRedis, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `pixhook` CLI against the Redis of a test stack or in-process app."""
    env = {**os.environ, **(env or {}), "PIXHOOK_REDIS_URL": stack.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
