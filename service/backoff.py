"""How long to wait before trying something again."""

from __future__ import annotations

import random


def backoff_s(attempt: int, first_s: float, max_s: float) -> float:
    """The wait after failed try `attempt` (from 1): `first_s` doubling up to `max_s`, of which a
    random 50-100%, so that callers failing together do not come back together."""
    return min(max_s, first_s * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
