"""A worker's decode budget: work waits for its bytes, and holds them until its thread ends."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.imaging.decode_budget import DecodeBudget, OverBudget


def test_work_waits_until_its_bytes_are_free():
    """Two decodes that do not fit together run one after the other."""
    order: list[str] = []
    release = threading.Event()

    def first() -> None:
        release.wait(5)
        order.append("first")

    async def main() -> None:
        budget = DecodeBudget(100)
        running = asyncio.create_task(budget.run(80, first))
        await asyncio.sleep(0)  # admitted, its thread blocked
        waiting = asyncio.create_task(budget.run(30, lambda: order.append("second")))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(running, waiting)

    asyncio.run(main())

    assert order == ["first", "second"]


def test_bytes_stay_held_until_the_thread_ends_though_its_caller_gave_up():
    """A job timeout cancels the await, not the decode: its thread still holds the memory."""
    release, first_ended = threading.Event(), threading.Event()

    def first() -> None:
        release.wait(5)
        first_ended.set()

    async def main() -> bool:
        budget = DecodeBudget(100)
        running = asyncio.create_task(budget.run(100, first))
        await asyncio.sleep(0)
        running.cancel()
        after = asyncio.create_task(budget.run(100, first_ended.is_set))
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        return await after

    assert asyncio.run(main()) is True


def test_work_larger_than_the_whole_budget_is_refused():
    async def main() -> None:
        await DecodeBudget(100).run(101, lambda: None)

    with pytest.raises(OverBudget) as caught:
        asyncio.run(main())

    assert (caught.value.needed, caught.value.budget) == (101, 100)
