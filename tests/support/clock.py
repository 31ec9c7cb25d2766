"""A clock a test moves by hand, for code that takes its notion of "now" as a callable."""

from __future__ import annotations


class ManualClock:
    """Reads `start` until advanced: waiting out a window becomes one `advance` call."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
