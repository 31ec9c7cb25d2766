"""Waiting on a condition with a deadline: what a test waits for is named, never guessed as a
sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How often a condition is looked at again: short beside any deadline, yet not so often that
# polling a stack's API takes the CPU its processes need (two cores run the whole suite).
POLL_S = 0.05


def wait_until(
    condition: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = POLL_S
) -> T:
    """The condition's first truthy value; an AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)
    return value
