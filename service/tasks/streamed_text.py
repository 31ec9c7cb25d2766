"""A provider's streamed text, forwarded to a job's live events as `job.output.delta`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

# Streamed text is forwarded in pieces at most this often or this long, so a long reply is a few
# dozen stream entries, not thousands of Redis writes.
DELTA_INTERVAL_S = 0.1
DELTA_CHARS = 200


class Deltas:
    """Streamed text, coalesced into `job.output.delta` events of `{"text", "attempt"}`.

    A new attempt (the stream broke and was retried) starts the text again: readers keep the
    pieces of the highest attempt."""

    def __init__(self, emit: Callable[[str, dict[str, Any]], Awaitable[str]]) -> None:
        self._emit = emit
        self._pending: list[str] = []
        self._attempt = 1
        self._sent_at = 0.0

    async def add(self, text: str, attempt: int) -> None:
        if attempt != self._attempt:
            await self.flush()
            self._attempt = attempt
        self._pending.append(text)
        if (
            time.monotonic() - self._sent_at >= DELTA_INTERVAL_S
            or sum(map(len, self._pending)) >= DELTA_CHARS
        ):
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            await self._emit("job.output.delta", {"text": text, "attempt": self._attempt})
            self._sent_at = time.monotonic()
