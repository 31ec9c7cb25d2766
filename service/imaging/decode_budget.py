"""A process's budget of memory for decoding images: each decode waits for its estimated bytes.

However many jobs a worker runs at once (PIXHOOK_JOB_CONCURRENCY), the decodes among them never
hold more than PIXHOOK_DECODE_BUDGET_BYTES together: four 49 MP PNGs arriving together are
decoded one after another instead of side by side. Admission is in arrival order, so a large
decode is not passed over for ever by small ones.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TypeVar

T = TypeVar("T")


class OverBudget(Exception):
    """The work needs more than the whole budget: it could never be admitted."""

    def __init__(self, needed: int, budget: int) -> None:
        super().__init__(f"needs {needed} bytes; the budget is {budget}")
        self.needed = needed
        self.budget = budget


class DecodeBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def run(self, needed: int, work: Callable[[], T]) -> T:
        """`work()` in a thread once `needed` bytes are free. The bytes are held until the thread
        ends, even when the caller is cancelled (a job timeout): the thread goes on decoding."""
        if needed > self.limit:
            raise OverBudget(needed, self.limit)
        await self._admit(needed)
        context = contextvars.copy_context()
        thread = asyncio.get_running_loop().run_in_executor(None, partial(context.run, work))
        thread.add_done_callback(partial(self._thread_ended, needed))
        return await asyncio.shield(thread)

    async def _admit(self, needed: int) -> None:
        if not self._waiting and needed <= self._free:
            self._free -= needed
            return
        turn = asyncio.get_running_loop().create_future()
        entry = (needed, turn)
        self._waiting.append(entry)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_back(needed)  # admitted just as the caller was cancelled
            else:
                self._waiting.remove(entry)
                self._wake()  # whoever was behind may fit now
            raise

    def _thread_ended(self, needed: int, thread: asyncio.Future[T]) -> None:
        if not thread.cancelled():
            thread.exception()  # retrieved: a cancelled caller is no longer there to see it
        self._give_back(needed)

    def _give_back(self, needed: int) -> None:
        self._free += needed
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._free:
            needed, turn = self._waiting.popleft()
            self._free -= needed
            turn.set_result(None)
