"""When to try a failed delivery again."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from webhooks.errors import InvalidDuration

# Svix's schedule: the delays after the 1st, 2nd, ... failed attempt.
DEFAULT_DELAYS_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `"250ms"`, `"5s"`, `"30m"` or `"2h"`."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidDuration(text)
    return float(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True)
class RetrySchedule:
    delays_s: tuple[float, ...] = DEFAULT_DELAYS_S
    jitter: float = 0.2

    @classmethod
    def parse(cls, spec: str, jitter: float = 0.2) -> RetrySchedule:
        """A schedule from `"5s,5m,30m"`; an empty spec means a single attempt."""
        parts = [p for p in spec.split(",") if p.strip()]
        return cls(tuple(parse_duration(p) for p in parts), jitter)

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after failed attempt `attempt` (1-based); None when none is left."""
        if attempt >= self.max_attempts:
            return None
        base = self.delays_s[attempt - 1]
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return base * (1 + spread)
